"""``mailing-results``: when a mailing file's campaign ends, its per-recipient results file
(D17, E1) beside the processed file: ``processed/<wallet>/<name>.resultado.csv`` — the
columns and cells of ``disparo campaign results --csv`` (``;``, UTF-8 with a BOM for
spreadsheets, formula-safe, E2), once per campaign.

Beyond the seeds (they name no return file for mailing files): a source says
``publish = ["mailing-results"]`` to have it. A file the collector had to move under a
numbered twin (its name was taken in ``processed/``) gets its results under the name it
was sent as.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import IO, Any, ClassVar

from engine import hookimpl
from engine.config import Key
from engine.plugins.publisher import Publication, Publisher
from engine.plugins.source import join


def results_path(processed_dir: str, path: str) -> str:
    """``BRAD/mailing_x.csv`` -> ``processed/BRAD/mailing_x.resultado.csv``."""
    stem = path[:-4] if path.lower().endswith(".csv") else path
    return join(processed_dir, f"{stem}.resultado.csv")


class MailingResults(Publisher):
    """Each mailing campaign's results, beside its processed file, once it is over."""

    name = "mailing-results"
    config_keys: ClassVar[dict[str, Key]] = {
        "results_after": Key(
            "duration",
            timedelta(0),
            minimum=0,
            help='How long after a campaign ends its results are published ("0s": at once).',
        ),
    }

    def _files(self, now: datetime | None) -> Iterable[Publication]:
        after: timedelta = self.source.options["results_after"]
        for found in self.context.reads.file_campaigns(self.source.name, finished=now is not None):
            if not found.path.lower().endswith(".csv"):
                continue  # not a mailing file
            due_at = found.finished_at + after if found.finished_at is not None else None
            if now is not None and (due_at is None or due_at > now):
                continue
            yield Publication(
                key=f"campaign-{found.campaign_id}",
                path=results_path(self.source.processed_dir, found.path),
                detail={"file_id": found.file_id, "campaign_id": found.campaign_id},
                due_at=due_at,
            )

    def due(self, now: datetime) -> Iterable[Publication]:
        return self._files(now)

    def planned(self, now: datetime) -> Iterable[Publication]:
        return (p for p in self._files(None) if p.due_at is None or p.due_at > now)

    def write(self, publication: Publication, out: IO[bytes]) -> None:
        text = io.TextIOWrapper(out, encoding="utf-8-sig", newline="")
        try:
            self.context.reads.write_results(int(publication.detail["campaign_id"]), text)
            text.flush()
        finally:
            text.detach()  # `out` is the engine's to close


@hookimpl
def register_publishers(register: Any) -> None:
    register(MailingResults)
