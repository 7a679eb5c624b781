"""The `mailing` file-name grammar: every rule N1–N21 and every example of the spec."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.mailing_names import (
    CHANNELS,
    MESSAGES,
    WHATSAPP_CHANNELS,
    MailingName,
    NameCheck,
    check_name,
    render_name,
)
from engine.schedule import Pacing

DAY = date(2026, 11, 22)


def check(name: str, **kw: object) -> NameCheck:
    kw.setdefault("today", DAY)
    return check_name(name, **kw)  # type: ignore[arg-type]


def codes(result: NameCheck) -> list[str]:
    return [p.code for p in result.errors]


def warning_codes(result: NameCheck) -> list[str]:
    return [p.code for p in result.warnings]


# -- the spec's examples -------------------------------------------------------------------


def test_example_wallet_from_folder_import_only() -> None:
    r = check("123/mailing_221126_001.csv")
    assert r.ok and r.errors == () and r.warnings == ()
    j = r.as_json()["mailing"]
    assert j["wallet"] == "123" and j["wallet_from_folder"] is True
    assert j["channel"] is None
    assert j["description"] == "mailing_221126_001"  # N14


def test_example_description_with_spaces_and_accents() -> None:
    r = check("mailing_221126_002_c123_dRégua 60 dias.csv")
    j = r.as_json()["mailing"]
    assert r.ok and j["wallet"] == "123" and j["wallet_from_folder"] is False
    assert j["description"] == "Régua 60 dias"


def test_example_hygiene() -> None:
    r = check("mailing_221126_003_c123_h.csv")
    assert r.ok and r.mailing is not None and r.mailing.hygiene
    assert r.mailing.channel is None


def test_example_sms_long_with_start() -> None:
    r = check("mailing_221126_004_cALTORISCO3_smslong_i0102180820.csv")
    assert r.ok
    j = r.as_json()["mailing"]
    assert j["wallet"] == "ALTORISCO3"
    assert j["channel"] == "sms-long"
    assert j["start_at"] == "2018-02-01T08:20"


def test_example_sms_short_paced() -> None:
    r = check("mailing_221126_005_cBRAD_smsshort_q15020.csv")
    assert r.ok
    j = r.as_json()["mailing"]
    assert j["channel"] == "sms-short" and j["start_at"] is None
    assert j["pacing"] == {"percent": 15, "interval_minutes": 20}


def test_example_whatsapp_exclusive() -> None:
    r = check(
        "mailing_221126_006_cMAIOR30_whatsappexclusivo_nw11998877665_x36"
        "_ntTEMPLATE_HOMOLOGADO_ITAU.csv"
    )
    assert r.ok and r.warnings == ()
    j = r.as_json()["mailing"]
    assert j["channel"] == "whatsapp-exclusive"
    assert j["whatsapp_number"] == "+5511998877665"
    assert j["template"] == "TEMPLATE_HOMOLOGADO_ITAU"  # N10: greedy, underscores kept
    assert j["exclude_recent_hours"] == 36


def test_example_email_sender_and_subject() -> None:
    r = check("mailing_221126_007_c123_email_ceAVISO@COMUNICADO.COM.BR_teAportunidade!!!.csv")
    assert r.ok
    j = r.as_json()["mailing"]
    assert j["channel"] == "email"
    assert j["sender"] == "AVISO@COMUNICADO.COM.BR"  # values keep their case
    assert j["subject"] == "Aportunidade!!!"


def test_json_shape_is_exactly_the_spec() -> None:
    j = check("mailing_221126_005_cBRAD_smsshort_q15020.csv").as_json()
    assert set(j) == {"file", "status", "errors", "warnings", "mailing"}
    assert set(j["mailing"]) == {
        "date",
        "sequence",
        "wallet",
        "wallet_from_folder",
        "description",
        "hygiene",
        "channel",
        "whatsapp_number",
        "template",
        "sender",
        "subject",
        "start_at",
        "pacing",
        "exclude_recent_hours",
        "replace_tags",
        "remove_other_wallets",
        "deadline",
    }
    assert j["mailing"]["date"] == "2026-11-22" and j["mailing"]["sequence"] == 5


# -- the head: N1–N5 -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["foo.csv", "mailing.csv", "mailings_221126_001.csv", ""])
def test_n1_not_a_mailing(name: str) -> None:
    r = check(name)
    assert r.status == "not-mailing" and r.mailing is None
    assert codes(r) == ["not-mailing"]


def test_n1_prefix_is_case_insensitive() -> None:
    assert check("MAILING_221126_001_c1.csv").ok


@pytest.mark.parametrize("name", ["mailing_221126_001_c1.txt", "mailing_221126_001_c1"])
def test_n2_bad_extension(name: str) -> None:
    r = check(name)
    assert r.status == "invalid" and "bad-extension" in codes(r)
    assert "mailing_221126_001_c1.csv" in r.errors[0].message  # shows the corrected name
    assert r.mailing is not None  # the head is readable


def test_n2_extension_is_case_insensitive() -> None:
    assert check("mailing_221126_001_c1.CSV").ok


@pytest.mark.parametrize("piece", ["320126", "290225", "2211", "22112026", "ab1126", ""])
def test_n3_bad_date(piece: str) -> None:
    r = check(f"mailing_{piece}_001_c1.csv")
    assert "bad-date" in codes(r) and r.mailing is None


def test_n3_year_is_2000_plus_yy_and_leap_days_exist() -> None:
    r = check("mailing_290224_001_c1.csv", today=date(2024, 2, 29))
    assert r.ok and r.mailing is not None and r.mailing.date == date(2024, 2, 29)


@pytest.mark.parametrize("piece", ["", "1234", "a1", "c1"])
def test_n4_bad_sequence(piece: str) -> None:
    name = f"mailing_221126_{piece}.csv" if piece else "mailing_221126.csv"
    r = check(name)
    assert "bad-sequence" in codes(r) and r.mailing is None


def test_n4_sequence_is_an_integer() -> None:
    a, b = check("mailing_221126_7_c1.csv"), check("mailing_221126_007_c1.csv")
    assert a.mailing is not None and b.mailing is not None
    assert a.mailing.sequence == b.mailing.sequence == 7


def test_n5_another_day_is_a_warning_not_an_error() -> None:
    r = check("mailing_221126_001_c1.csv", today=date(2026, 11, 23))
    assert r.ok and warning_codes(r) == ["not-today"]
    assert "_231126" in r.warnings[0].message  # how to fix it
    assert check("mailing_221126_001_c1.csv", today=DAY).warnings == ()


# -- parameters: N7–N11 ----------------------------------------------------------------------


def test_n7_unknown_parameter_names_the_piece_and_suggests() -> None:
    r = check("mailing_221126_001_c1_limpartags.csv")
    assert codes(r) == ["unknown-parameter"]
    assert "`_limpartags`" in r.errors[0].message and "`_limpartag`" in r.errors[0].message


def test_n7_empty_piece() -> None:
    assert codes(check("mailing_221126_001_c1__h.csv")) == ["unknown-parameter"]
    assert codes(check("mailing_221126_001_c1_.csv")) == ["unknown-parameter"]


def test_n7_le_without_ten_digits_is_unknown_with_a_hint() -> None:
    r = check("mailing_221126_001_c1_smslong_LE2211.csv")
    assert codes(r) == ["unknown-parameter"] and "10 digits" in r.errors[0].message


def test_keywords_are_case_insensitive_values_keep_case() -> None:
    r = check("mailing_221126_001_CBrad_SMSLONG_Q15020_Le2211261800_dMiXeD.csv")
    assert r.ok and r.mailing is not None
    assert r.mailing.wallet == "Brad" and r.mailing.description == "MiXeD"
    assert r.mailing.channel == "sms-long" and r.mailing.deadline == datetime(2026, 11, 22, 18, 0)


@pytest.mark.parametrize(
    "params",
    ["c1_c2", "c1_h_h", "c1_email_email_teX", "c1_d1_d2", "c1_smslong_q15020_q10010"],
)
def test_n8_duplicate_parameter(params: str) -> None:
    assert "duplicate-parameter" in codes(check(f"mailing_221126_001_{params}.csv"))


@pytest.mark.parametrize(
    ("params", "rule_word"),
    [
        ("c", "wallet"),
        ("cA+B", "wallet"),
        ("c1_d", "description"),
        ("c1_d   ", "description"),
        ("c1_whatsappexclusivo_nw123_ntT", "WhatsApp"),
        ("c1_whatsappexclusivo_nw12345678901234_ntT", "WhatsApp"),
        ("c1_whatsappexclusivo_nw10912345678_ntT", "valid phone"),
        ("c1_email_teS_ceA@", "sender"),
        ("c1_email_te", "subject"),
        ("c1_smslong_i01021808", "start"),
        ("c1_smslong_i3202180820", "start"),
        ("c1_smslong_i0102182460", "start"),
        ("c1_smslong_LE3202181000", "deadline"),
        ("c1_smslong_q1502", "pacing"),
        ("c1_smslong_q00020", "pacing"),
        ("c1_smslong_q15000", "pacing"),
        ("c1_smslong_qAB020", "pacing"),
        ("c1_smslong_x", "exclusion"),
        ("c1_smslong_x12345", "exclusion"),
        ("c1_smslong_x3h", "exclusion"),
    ],
)
def test_n9_bad_value_says_which_parameter_and_why(params: str, rule_word: str) -> None:
    r = check(f"mailing_221126_001_{params}.csv")
    assert codes(r) == ["bad-value"]
    assert rule_word in r.errors[0].message and r.errors[0].message.endswith("(N9)")


def test_n9_whatsapp_number_national_and_international() -> None:
    for digits, e164 in [
        ("11998877665", "+5511998877665"),
        ("1133334444", "+551133334444"),
        ("5511998877665", "+5511998877665"),
        ("393331234567", "+393331234567"),
    ]:
        r = check(f"mailing_221126_001_c1_whatsappexclusivo_nw{digits}_ntT.csv")
        assert r.ok, (digits, codes(r))
        assert r.mailing is not None and r.mailing.whatsapp_number == e164


def test_n10_template_is_greedy_and_warns_about_swallowed_parameters() -> None:
    r = check("mailing_221126_001_c1_whatsappcompartilhado_ntPROMO_x36_q15020_limpartag.csv")
    assert r.ok and r.mailing is not None
    assert r.mailing.template == "PROMO_x36_q15020_limpartag"
    assert r.mailing.exclude_recent_hours is None and r.mailing.pacing is None
    swallowed = [p.piece for p in r.warnings if p.code == "param-after-template"]
    assert swallowed == ["x36", "q15020", "limpartag"]


def test_n10_free_text_pieces_in_a_template_do_not_warn() -> None:
    # TEMPLATE starts with "te", HOMOLOGADO with "h", ITAU with "i": none is a parameter
    r = check("mailing_221126_001_c1_whatsappcompartilhado_ntTEMPLATE_HOMOLOGADO_ITAU.csv")
    assert r.ok and r.warnings == ()


def test_n11_no_order_beyond_the_head_and_template() -> None:
    a = check("mailing_221126_001_q15020_smsshort_cBRAD_h.csv")
    b = check("mailing_221126_001_cBRAD_h_smsshort_q15020.csv")
    assert a.ok and b.ok and a.mailing == b.mailing


def test_disambiguation_ce_needs_an_at_sign() -> None:
    r = check("mailing_221126_001_cEMPRESA.csv")
    assert r.mailing is not None and r.mailing.wallet == "EMPRESA"
    r = check("mailing_221126_001_ceAVISO.csv")  # no '@': a wallet called eAVISO
    assert r.ok and r.mailing is not None and r.mailing.wallet == "eAVISO"
    r = check("mailing_221126_001_c1_email_teX_ceAVISO@X.COM.csv")
    assert r.ok and r.mailing is not None and r.mailing.sender == "AVISO@X.COM"


# -- combinations: N12–N21 ---------------------------------------------------------------------


def test_n12_conflicting_channels() -> None:
    r = check("mailing_221126_001_c1_smslong_smsshort.csv")
    assert codes(r) == ["conflicting-channels"]
    assert "_smslong" in r.errors[0].message and "_smsshort" in r.errors[0].message


def test_n13_missing_wallet_and_folder_rules() -> None:
    assert codes(check("mailing_221126_001.csv")) == ["missing-wallet"]
    r = check("BRAD/mailing_221126_001_cITAU.csv")  # _c wins over the folder
    assert r.wallet == "ITAU" and r.as_json()["mailing"]["wallet_from_folder"] is False
    r = check("a/b/BRAD/mailing_221126_001.csv")  # the last folder is the wallet
    assert r.ok and r.wallet == "BRAD"
    assert "bad-value" in codes(check("MY WALLET/mailing_221126_001.csv"))
    assert check("MY WALLET/mailing_221126_001_cOK.csv").ok  # _c makes the folder irrelevant


def test_n14_description_defaults_to_the_file_name() -> None:
    r = check("mailing_221126_001_c1_h.csv")
    assert r.description == "mailing_221126_001_c1_h"


def test_n15_whatsapp_number_rules() -> None:
    assert codes(check("mailing_221126_001_c1_whatsappexclusivo_ntT.csv")) == [
        "missing-whatsapp-number"
    ]
    r = check("mailing_221126_001_c1_whatsappcompartilhado_nw11998877665_ntT.csv")
    assert codes(r) == ["whatsapp-number-without-exclusive"]
    assert codes(check("mailing_221126_001_c1_nw11998877665.csv")) == [
        "whatsapp-number-without-exclusive"
    ]


@pytest.mark.parametrize(
    "word", ["whatsappexclusivo_nw11998877665", "whatsappcompartilhado", "whatsappprospect"]
)
def test_n16_every_whatsapp_channel_needs_a_template(word: str) -> None:
    assert codes(check(f"mailing_221126_001_c1_{word}.csv")) == ["missing-template"]


def test_n16_template_without_whatsapp() -> None:
    assert codes(check("mailing_221126_001_c1_smslong_ntT.csv")) == ["template-without-whatsapp"]
    assert codes(check("mailing_221126_001_c1_ntT.csv")) == ["template-without-whatsapp"]


def test_n17_email_parameters() -> None:
    assert codes(check("mailing_221126_001_c1_teOi.csv")) == ["email-params-without-email"]
    assert codes(check("mailing_221126_001_c1_smslong_ceA@B.COM.csv")) == [
        "email-params-without-email"
    ]
    assert codes(check("mailing_221126_001_c1_email.csv")) == ["missing-subject"]
    with_default = check("mailing_221126_001_c1_email.csv", default_subject={"1": "Olá"}.get)
    assert with_default.ok
    folder_default = check("BRAD/mailing_221126_001_email.csv", default_subject={"BRAD": "x"}.get)
    assert folder_default.ok


@pytest.mark.parametrize("piece", ["i0102180820", "q15020", "x36", "LE2211261800"])
def test_n18_campaign_parameters_need_a_channel(piece: str) -> None:
    r = check(f"mailing_221126_001_c1_{piece}.csv")
    assert codes(r) == ["campaign-params-without-channel"] and piece in r.errors[0].message


def test_n19_deadline_not_after_start() -> None:
    base = "mailing_221126_001_c1_smslong_i2211261000"
    assert codes(check(f"{base}_LE2211261000.csv")) == ["deadline-before-start"]
    assert codes(check(f"{base}_LE2211260959.csv")) == ["deadline-before-start"]
    assert check(f"{base}_LE2211261001.csv").ok


def test_n19_deadline_passed_is_reported_when_now_is_known() -> None:
    name = "mailing_221126_001_c1_smslong_LE2211260900.csv"
    assert check(name).warnings == ()
    r = check(name, now=datetime(2026, 11, 22, 9, 0))
    assert r.ok and warning_codes(r) == ["deadline-passed"]


def test_n21_no_channel_only_imports() -> None:
    r = check("mailing_221126_001_c1_h_limpartag_removercarteiras.csv")
    assert r.ok and r.mailing is not None and r.mailing.channel is None
    assert r.mailing.replace_tags and r.mailing.remove_other_wallets


def test_every_error_says_its_rule_and_has_a_portuguese_twin() -> None:
    for key in MESSAGES.entries():
        rule = MESSAGES.rule(key)
        assert rule.startswith("N")
    r = check("mailing_221126_001_c1_smslong_smsshort_zz.csv")
    for p in r.errors:
        assert p.message.endswith(f"({p.rule})") and p.message_pt.endswith(f"({p.rule})")
        assert p.message != p.message_pt


# -- properties ------------------------------------------------------------------------------

_TEXT = st.text(
    alphabet=st.characters(
        codec="utf-8",
        categories=("L", "N", "Zs", "P", "S"),
        exclude_characters="_/\\",
    ),
    min_size=1,
    max_size=12,
).filter(lambda s: s.strip() != "" and s.isprintable())
_WALLET = st.text(
    alphabet=st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.Ééç"),
    min_size=1,
    max_size=10,
)
_STAMPS = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)).map(
    lambda d: d.replace(second=0, microsecond=0)
)
_TEMPLATE = st.lists(
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij0123456789", min_size=1, max_size=8),
    min_size=1,
    max_size=4,
).map("_".join)
_DDDS = [
    d
    for d in range(11, 100)
    if phonenumbers.is_valid_number(phonenumbers.parse(f"+55{d}991234567"))
]
_MOBILES = (
    st.sampled_from(_DDDS)
    .flatmap(
        lambda ddd: st.integers(min_value=91000_0000, max_value=99999_9999).map(
            lambda n: f"+55{ddd}{n}"
        )
    )
    .filter(lambda e164: phonenumbers.is_valid_number(phonenumbers.parse(e164)))
)


@st.composite
def valid_mailings(draw: st.DrawFn) -> MailingName:
    channel = draw(st.none() | st.sampled_from(CHANNELS))
    start = draw(st.none() | _STAMPS) if channel else None
    deadline = draw(st.none() | _STAMPS) if channel else None
    if start is not None and deadline is not None and deadline <= start:
        deadline = None
    import unicodedata

    def nfc(value: str | None) -> str | None:
        return unicodedata.normalize("NFC", value) if value is not None else None

    return MailingName(
        date=draw(st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31))),
        sequence=draw(st.integers(min_value=0, max_value=999)),
        wallet=nfc(draw(_WALLET)),
        description=nfc(draw(st.none() | _TEXT)),
        hygiene=draw(st.booleans()),
        channel=channel,
        whatsapp_number=draw(_MOBILES) if channel == "whatsapp-exclusive" else None,
        template=draw(_TEMPLATE) if channel in WHATSAPP_CHANNELS else None,
        sender=draw(st.none() | st.just("aviso@empresa.com.br")) if channel == "email" else None,
        subject=nfc(draw(_TEXT)) if channel == "email" else None,
        start_at=start,
        pacing=(
            draw(
                st.none()
                | st.builds(
                    Pacing.percent,
                    st.integers(min_value=1, max_value=99),
                    st.integers(min_value=1, max_value=999).map(lambda m: timedelta(minutes=m)),
                )
            )
            if channel
            else None
        ),
        exclude_recent_hours=draw(st.none() | st.integers(0, 9999)) if channel else None,
        replace_tags=draw(st.booleans()),
        remove_other_wallets=draw(st.booleans()),
        deadline=deadline,
    )


@settings(max_examples=400)
@given(valid_mailings())
def test_property_round_trip(m: MailingName) -> None:
    name = render_name(m)
    r = check_name(name, today=m.date)
    assert r.ok, (name, [p.message for p in r.errors])
    assert r.mailing == m


@settings(max_examples=300)
@given(valid_mailings(), st.sampled_from(["BRAD", "123", "a.b-c"]))
def test_property_round_trip_with_folder(m: MailingName, folder: str) -> None:
    r = check_name(render_name(m, folder=folder), today=m.date)
    assert r.ok and r.mailing == m
    assert r.wallet == (m.wallet or folder)


@settings(max_examples=1000)
@given(st.text())
def test_property_arbitrary_strings_never_raise(name: str) -> None:
    r = check_name(name, today=DAY)
    assert r.status in ("valid", "invalid", "not-mailing")
    assert (r.status == "valid") == (not r.errors)


@settings(max_examples=500)
@given(
    st.lists(
        st.sampled_from(
            [
                "mailing",
                "221126",
                "001",
                "c1",
                "h",
                "email",
                "smslong",
                "nt",
                "nw",
                "ce@",
                "te",
                "LE",
                "i",
                "q",
                "x",
                "d",
                "",
                "whatsappexclusivo",
                "é",
                "\x00",
                "..",
                "/",
            ]
        )
        | st.text(max_size=5),
        max_size=10,
    ),
    st.sampled_from([".csv", ".CSV", "", ".txt", "/"]),
)
def test_property_near_miss_names_never_raise(pieces: list[str], ext: str) -> None:
    r = check_name("_".join(["mailing", *pieces]) + ext, today=DAY, now=datetime(2026, 11, 22))
    json_obj = r.as_json()
    assert json_obj["status"] == r.status
