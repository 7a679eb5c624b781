"""The Campaigns screen measures and cuts texts by their length when every character takes one
cell (issue 16 goal 7: the refresh of 1,000 rows); what it shows must stay what rich measures,
whatever the script: wide characters, combining marks, joiners, control characters."""

from __future__ import annotations

import itertools

from rich.cells import cell_len

from tui.screens.campaigns import cell_width, cut

SAMPLES = (
    "",
    "mailing_231126_001_cBRAD_smslong",
    "campanha · 10% a cada 1h → até 19:00",
    "São Paulo ação",
    "漢字のキャンペーン",
    "emoji 😀 and 👩‍💻 joined",
    "e\u0301 combining",
    "soft\u00adhyphen",
    "tab\tand\x01control",
    "flag 🇧🇷 ok",
    "variation ☺\ufe0f",
)


def _rich_cut(text: str, width: int) -> str:
    # the definition: the longest prefix rich measures within width - 1, then an ellipsis
    if cell_len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    out = ""
    for ch in text:
        if cell_len(out + ch) > width - 1:
            break
        out += ch
    return out + "…"


def test_cell_width_is_what_rich_measures() -> None:
    for text in SAMPLES:
        assert cell_width(text) == cell_len(text), text


def test_cut_keeps_what_fits_and_ends_what_does_not_with_an_ellipsis() -> None:
    for text, width in itertools.product(SAMPLES, range(0, 40)):
        got = cut(text, width)
        assert got == _rich_cut(text, width), (text, width)
        assert cell_len(got) <= width, (text, width, got)
