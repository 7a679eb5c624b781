"""Per-recipient results files (D17): one format for `disparo campaign results --csv` and the
terminal UI's export — Portuguese column names as the customers' own files, ``;``-separated,
UTF-8 with a BOM (what Brazilian spreadsheets open right), formula-safe cells (E2)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, tzinfo
from pathlib import Path
from typing import IO, TYPE_CHECKING

from engine.csvsafe import SafeWriter

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


def write_results(
    store: Store,
    campaign_id: int,
    handle: IO[str],
    tz: tzinfo,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Stream every recipient of a campaign into ``handle``; return how many."""
    out = SafeWriter(handle)
    out.writerow(RESULT_COLUMNS)
    written = 0
    for chunk in store.results.all(campaign_id):
        for r in chunk:
            out.writerow(result_row(r, tz))
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
