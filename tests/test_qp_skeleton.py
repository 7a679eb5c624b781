"""The compiled quoted-printable skeleton of an e-mail part (issue 16, goal 1) gives the bytes
of the full encoder: ``QpPart.compile(template).encode(values)`` equals
``_qp(template.render(values))`` for any template of text and ``{{ name }}`` and any values
(non-ASCII, lines longer than 76 characters around the variables, CRLF and bare LF, ``.`` at a
line start, ``=``, trailing spaces and tabs), in text and HTML parts; and a whole message
composed with the skeleton is byte-identical to one composed by the full encoder."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels.email import QpPart, _qp
from engine.render import Substitution, compile_html, compile_text, substitution
from tests.bench.bench_compose import NEWSLETTER, ONE_LINE, channel, deliveries, oferta

NAMES = ["a", "b", "nome"]
# the characters that steer quoted-printable: line ends, dots, '=', blanks, 8-bit text,
# HTML's specials (escaped in HTML parts), and plain letters to make long lines
CHARS = st.sampled_from(
    [*"ab.= \t\n\r\nxyzXYZ0<>&\"'", "ã", "é", "€", "😀", "\n.", ". ", "x" * 40, "=\n"]
)
TEXT = st.lists(CHARS, max_size=40).map("".join)


@st.composite
def templates(draw: Any) -> tuple[str, dict[str, Any]]:
    parts = draw(st.lists(st.tuples(TEXT, st.sampled_from([*NAMES, None])), max_size=8))
    source = "".join(t + ("{{ " + n + " }}" if n else "") for t, n in parts) + draw(TEXT)
    values = draw(
        st.dictionaries(st.sampled_from(NAMES), st.one_of(TEXT, st.integers(), st.none()))
    )
    return source, values


@pytest.mark.parametrize("run", [1, 30, None])
@pytest.mark.parametrize("compile_", [compile_text, compile_html])
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=templates())
def test_the_skeleton_encodes_as_the_full_encoder(
    compile_: Any, run: int | None, case: Any
) -> None:
    source, values = case
    template = substitution(compile_(source))
    assert isinstance(template, Substitution)
    part = QpPart.compile(template, run)  # encoded ahead: static runs of ≥ run characters
    if part is None:  # a template with \r, or no run of static lines: encoded whole
        return
    assert part.encode(values) == _qp(template.render(values))


@pytest.mark.parametrize(
    "source",
    [
        "linha 1\n{{ a }}\nlinha 3\n",
        "\n\n{{ a }}",
        "{{ a }}\n" + "x" * 200 + "\n{{ b }} fim",
        "estático\n.\n= \t\nsó texto",
        "a {{ a }} b\n" * 3 + "fixo\n",
    ],
)
def test_templates_with_static_lines_are_compiled(source: str) -> None:
    template = substitution(compile_text(source))
    part = QpPart.compile(template, 1)
    assert part is not None
    for values in ({"a": "São\r\nPaulo", "b": " "}, {"a": "x" * 90 + " ", "b": "."}, {}):
        assert part.encode(values) == _qp(template.render(values))


@pytest.mark.parametrize("body", [ONE_LINE, NEWSLETTER, NEWSLETTER.replace("\n", "\r\n")])
def test_messages_composed_with_the_skeleton_are_byte_identical(body: str, tmp_path: Path) -> None:

    email = channel(tmp_path)
    campaign = oferta("Olá {{ nome }}, uma oferta", body)
    fast = email.prepare(campaign)
    full = replace(fast, text_part=None, html_part=None)
    batch = deliveries(20)
    batch[3].variables["cidade"] = "linha\r\nquebrada = " + "y" * 100
    batch[4].variables["nome"] = "<b>Zé</b> ." + " " * 3
    for d in batch:
        assert email.compose(fast, d, d.address) == email.compose(full, d, d.address)
