"""Hygiene fast paths (N26, issue 16 goal 4): ``normalise_phone`` and ``normalise_email``
decide the common shapes without the libraries' parsers; on every input they must answer
exactly what the full path (phonenumbers, email-validator) answers, errors included."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.addresses import (
    _br_national_number,
    _normalise_email,
    _normalise_phone,
    normalise_email,
    normalise_phone,
)

# valid DDDs and some that are not (00, 10, 20, 23, 25, 26, 29, 30, 36, 39, 50, 52, 56–60,
# 70, 72, 76, 78, 80, 90), and 55 (also Brazil's country code)
DDDS = ["11", "21", "27", "31", "41", "51", "55", "61", "68", "71", "81", "91", "99"]
BAD_DDDS = ["00", "10", "20", "23", "30", "39", "50", "56", "60", "70", "80", "90"]
SEPARATORS = ["", " ", "-", ".", "  ", " - ", "/", "\u00a0", "\t", "(", ")"]


@st.composite
def brazilian_phones(draw: st.DrawFn) -> str:
    """Brazilian numbers as people write them: with or without +55 / 55 / 0 / a carrier
    code, DDD in parentheses or not, with or without the ninth digit, odd separators."""
    prefix = draw(
        st.sampled_from(
            [
                "",
                "",
                "",
                "",
                "+55",
                "+55 ",
                "+55",
                "55",
                "55 ",
                "+ 55",
                "0",
                "015 ",
                "(0xx11) ",
                "+1 ",
            ]
        )
    )
    ddd = draw(st.sampled_from(DDDS + DDDS + BAD_DDDS))
    if draw(st.booleans()):
        ddd = f"({ddd})"
    ninth = draw(st.sampled_from(["9", "", "8", "7", "1"]))
    digits = "0123456789"
    first = draw(
        st.sampled_from([3, 4, 4, 4, 4, 5]).flatmap(
            lambda n: st.text(digits, min_size=n, max_size=n)
        )
    )
    last = draw(
        st.sampled_from([3, 4, 4, 4, 4, 5]).flatmap(
            lambda n: st.text(digits, min_size=n, max_size=n)
        )
    )
    sep = st.sampled_from(["", " ", "-", "", " ", "-", *SEPARATORS])
    text = f"{prefix}{ddd}{draw(sep)}{ninth}{first}{draw(sep)}{last}"
    padding = st.sampled_from(["", "", "", " ", "\t", "\u3000"])
    return draw(padding) + text + draw(padding)


@st.composite
def usual_phones(draw: st.DrawFn) -> str:
    """The shapes of most files: a valid DDD, a mobile (ninth digit) or a landline."""
    prefix = draw(st.sampled_from(["", "", "+55", "+55 ", "55", "0"]))
    ddd = draw(st.sampled_from(DDDS))
    subscriber = draw(st.from_regex(r"9[0-9]{4}|[2-5][0-9]{3}", fullmatch=True))
    last = draw(st.from_regex(r"[0-9]{4}", fullmatch=True))
    shape = draw(st.sampled_from(["({}) {}-{}", "{}{}{}", "{} {} {}", "({}){}{}", "{}.{}.{}"]))
    return prefix + shape.format(ddd, subscriber, last)


ODD_PHONE = st.text(
    alphabet=st.sampled_from(
        [
            *"0123456789 ()-.+x#*/",
            "０",
            "１",
            "９",
            "٣",
            "\u00a0",
            "\u2007",
            "\u200b",
            "a",
            "T",
            "é",
            "e",
        ]
    ),
    max_size=24,
)


@settings(max_examples=1500)
@given(value=st.one_of(usual_phones(), brazilian_phones(), ODD_PHONE), mobile=st.booleans())
def test_the_phone_fast_path_answers_what_phonenumbers_answers(value: str, mobile: bool) -> None:
    assert normalise_phone(value, mobile=mobile) == _normalise_phone(
        value.strip(), mobile=mobile, region="BR"
    )


def test_the_phone_fast_path_takes_the_common_shapes() -> None:
    for written in ("(11) 98765-4321", "11987654321", "+55 11 98765-4321", "+5511987654321"):
        assert _br_national_number(written) == "11987654321"
        assert normalise_phone(written, mobile=True).value == "+5511987654321"
    assert normalise_phone("(11) 3456-7890").value == "+551134567890"  # a landline
    # N26: a landline is not a mobile, whichever path decides
    assert normalise_phone("(11) 3456-7890", mobile=True).code == "not-mobile"
    # what the parser may read otherwise is left to it: prefixes, 55 first, other lengths
    for odd in ("011987654321", "5511987654321", "55 99876-5432", "9087654321", "987654321"):
        assert _br_national_number(odd) is None


ATEXT = "abcxyzABCXYZ0189_!#$%&'*+-/=?^`{|}~"
LOCAL = st.text(
    alphabet=st.sampled_from(
        [
            *(ATEXT + '.. @"\\<>[](),;:'),
            "é",
            "ü",
            "ß",
            "İ",
            "ç",
            "\u0301",
            "\u00a0",
            "ｆ",
            "ñ",
            "\u200b",
            "😀",
        ]
    ),
    min_size=0,
    max_size=20,
)
DOMAINS = st.sampled_from(
    [
        "gmail.com",
        "GMAIL.COM",
        "Hotmail.Com",
        "uol.com.br",
        "empresa.com.br",
        "bücher.com.br",
        "xn--bcher-kva.com",
        "BÜCHER.de",
        "münchen.de",
        "exa_mple.com",
        "-bad.com",
        "bad-.com",
        "a..b.com",
        "localhost",
        "example.com",
        "test.invalid",
        "123.com",
        "x.y",
        "[127.0.0.1]",
        "sub.domain.co",
        "com",
        "a" * 64 + ".com",
        ("a" * 60 + ".") * 4 + "com",
        "xn--.com",
        "ｅｘａｍｐｌｅ.com",
    ]
)


@st.composite
def addresses(draw: st.DrawFn) -> str:
    local = draw(st.one_of(LOCAL, st.sampled_from(["cliente.1", "Joao.Silva", "a" * 64, "b" * 65])))
    domain = draw(st.one_of(DOMAINS, st.text(alphabet="abcXYZ09.-_é", min_size=1, max_size=12)))
    padding = st.sampled_from(["", " ", "\t", "\u00a0"])
    return draw(padding) + local + "@" + domain + draw(padding)


@settings(max_examples=1500)
@given(value=st.one_of(addresses(), st.text(max_size=30)))
def test_the_email_fast_path_answers_what_email_validator_answers(value: str) -> None:
    assert normalise_email(value) == _normalise_email(value.strip())


def test_the_email_fast_path_keeps_the_local_part_and_lowers_the_domain() -> None:
    assert normalise_email(" Joao.Silva@Empresa.COM.br ").value == "Joao.Silva@empresa.com.br"
    assert normalise_email("a@bücher.com.br").value == _normalise_email("a@bücher.com.br").value
    assert normalise_email("joão@empresa.com.br").value == "joão@empresa.com.br"  # full path
    assert normalise_email("a..b@empresa.com.br").code == "bad-email"
