"""Per-recipient results files (D17): one format for `disparo campaign results --csv` and the
terminal UI's export — Portuguese column names as the customers' own files, ``;``-separated,
UTF-8 with a BOM (what Brazilian spreadsheets open right), formula-safe cells (E2)."""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import IO, TYPE_CHECKING

from engine.csvsafe import FORMULA_STARTS, safe_cell

if TYPE_CHECKING:
    from engine.store import Store
    from engine.store.results import RecipientResult

#: the columns of a results file, in order
RESULT_COLUMNS = (
    "codigo",
    "nome",
    "endereco",
    "status",
    "status_provedor",
    "enviado_em",
    "entregue_em",
    "lido_em",
    "clicado_em",
    "cliques",
    "urls_clicadas",
    "motivo_nao_enviado",
    "descadastrado_campanha",
    "descadastrado_todas",
    "reclamacao_em",
)
ENCODING = "utf-8-sig"


def result_row(r: RecipientResult, tz: tzinfo) -> list[str]:
    """One recipient as the cells of a results file (times in ``tz``)."""

    def t(value: datetime | None) -> str:
        return value.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S") if value else ""

    return [
        r.code or "",
        r.name or "",
        r.address,
        r.status,
        r.provider_status or "",
        t(r.sent_at),
        t(r.delivered_at),
        t(r.opened_at),
        t(r.clicked_at),
        str(r.clicks),
        " ".join(r.urls),
        r.reason or "",
        "sim" if r.unsubscribed_campaign else "nao",
        "sim" if r.unsubscribed_all else "nao",
        t(r.complained_at),
    ]


class LocalTimes:
    """Stored UTC times (the database's text, ``YYYY-MM-DD HH:MM:SS[.ffffff]``) as the
    results file's local ``YYYY-MM-DD HH:MM:SS`` in ``tz``: the zone's offset is worked out
    once per minute of UTC (offsets are whole minutes: the seconds carry over as they are),
    so a million-row export parses and converts a few thousand times, not millions."""

    #: minutes remembered before the cache starts afresh
    LIMIT = 100_000

    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz
        self._minutes: dict[str, str] = {}

    def _slow(self, stamp: str) -> str:
        at = datetime.fromisoformat(stamp[:19]).replace(tzinfo=UTC)
        return at.astimezone(self.tz).strftime("%Y-%m-%d %H:%M:%S")

    def __call__(self, stamp: str | None) -> str:
        """The local time of a stored UTC time, "" for none."""
        if not stamp:
            return ""
        minute = self._minutes.get(stamp[:16])
        if minute is None:
            at = datetime.fromisoformat(stamp[:16]).replace(tzinfo=UTC).astimezone(self.tz)
            if at.second:  # an offset with seconds (old local mean times): no shortcut
                return self._slow(stamp)
            if len(self._minutes) >= self.LIMIT:
                self._minutes.clear()
            minute = self._minutes[stamp[:16]] = at.strftime("%Y-%m-%d %H:%M")
        return minute + stamp[16:19]


def write_results(
    store: Store,
    campaign_id: int,
    handle: IO[str],
    tz: tzinfo,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Stream every recipient of a campaign into ``handle``; return how many. The same cells
    as ``result_row`` (a test holds them equal), from plain tuples (``Results.export_rows``):
    the free-text cells go through ``safe_cell`` only when they need it (E2), the times
    through ``LocalTimes``."""
    # the store only when a file is written
    from engine.store.results import SENT_STATES, STATUS_REASONS

    out = csv.writer(handle, delimiter=";", lineterminator="\r\n")
    out.writerow(RESULT_COLUMNS)
    when = LocalTimes(tz)
    starts = FORMULA_STARTS

    def safe(text: str | None) -> str:
        if not text:
            return ""
        return text if text.isprintable() and not text.startswith(starts) else safe_cell(text)

    written = 0
    for chunk in store.results.export_rows(campaign_id):
        out.writerows(
            (
                safe(code),
                safe(name),
                safe(address),
                status,
                safe(provider_status),
                when(sent),
                when(delivered),
                when(opened),
                when(clicked),
                len(urls) if urls else 0,
                safe(" ".join(dict.fromkeys(urls))) if urls else "",
                ""
                if status in SENT_STATES
                else safe(error or STATUS_REASONS.get(status, f"not sent ({status})")),
                "sim" if unsubscribed in ("campaign", "all") else "nao",
                "sim" if unsubscribed == "all" or everywhere else "nao",
                when(complained),
            )
            for (
                code,
                name,
                address,
                status,
                provider_status,
                sent,
                delivered,
                opened,
                clicked,
                complained,
                unsubscribed,
                error,
                _,
                urls,
                everywhere,
            ) in chunk
        )
        written += len(chunk)
        if progress is not None:
            progress(written)
    return written


def export_results(
    store: Store,
    campaign_id: int,
    target: Path,
    tz: tzinfo,
    *,
    overwrite: bool = True,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write the results file ``target`` via ``<target>.part``, renamed once complete, so a
    half-written file never stands under the name asked for. With ``overwrite`` false an
    existing file is never replaced (``FileExistsError``)."""
    if not overwrite and target.exists():
        raise FileExistsError(f"{target} exists: an export never overwrites a file")
    part = target.with_name(target.name + ".part")
    try:
        with part.open("w" if overwrite else "x", encoding=ENCODING, newline="") as handle:
            written = write_results(store, campaign_id, handle, tz, progress)
        part.replace(target)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return written
