"""``triplet-results`` (T8): the six result files of a send, published to the folder the send
came from ``results_after`` after its campaign ended (seed 001: "N days after the send").

``SEND_ABERTURA_YYYYMMDD`` (every open), ``SEND_ABERTURAUNICA_YYYYMMDD`` (each contact's
first), ``SEND_CLIQUE_YYYYMMDD`` (every click, with its link), ``SEND_CLIQUEUNICO_YYYYMMDD``
(each contact's first), ``SEND_RETORNADO_YYYYMMDD`` (every contact of MAIL that did not get
the message, with why) and ``SEND_CANCELADO_YYYYMMDD`` (who opted out): always six, even
empty, no extension, ``;``-separated UTF-8 with a header row, ``DATA_HORA`` as
``DD/MM/YYYY HH:MM:SS`` in the configured time zone, every cell formula-safe (E2). The date
is the send's own.

A click counts as an open when no open came before it (images are often blocked), as the
campaign's counters count it: ABERTURAUNICA has each contact who opened or clicked, and
ABERTURA has those first opens too.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import IO, Any, ClassVar

from engine import hookimpl
from engine.config import Key
from engine.csvsafe import SafeWriter
from engine.plugins.publisher import FileCampaign, NotSent, Publication, Publisher
from plugins.formats.triplet import RESULT_TYPES, Member, member_path, parse_member, send_path

#: T8: each file's header row
HEADERS: dict[str, tuple[str, ...]] = {
    "ABERTURA": ("EMAIL", "DATA_HORA"),
    "ABERTURAUNICA": ("EMAIL", "DATA_HORA"),
    "CLIQUE": ("EMAIL", "DATA_HORA", "URL"),
    "CLIQUEUNICO": ("EMAIL", "DATA_HORA", "URL"),
    "RETORNADO": ("EMAIL", "DATA_HORA", "MOTIVO"),
    "CANCELADO": ("EMAIL", "DATA_HORA"),
}
#: RETORNADO's MOTIVO: why, in the customer's words, before the provider's or disparo's
REASONS = {
    "invalid": "endereço inválido",
    "suppressed": "suprimido",
    "bounced": "bounce permanente",
    "soft-bounce": "bounce temporário",
    "expired": "expirado: o prazo do envio terminou antes",
    "cancelled": "cancelado",
    "failed": "falha no envio",
    "skipped": "não enviado: interação recente (_x)",
}
#: why an address is suppressed (the suppression's origin), in the customer's words
SUPPRESSED = {
    "bounce": "bounce permanente num envio anterior",
    "complaint": "marcou uma mensagem como spam",
    "unsubscribe": "descadastrado de todas as campanhas",
    "stop": "pediu para sair (STOP)",
    "manual": "bloqueado pelo operador",
}


def motivo(n: NotSent) -> str:
    """RETORNADO's MOTIVO for a contact not sent to: what happened in a word or two, then
    the provider's or disparo's own words (a DSN's status and diagnostic…)."""
    label = REASONS.get(n.reason, n.reason)
    detail = " ".join(n.detail.split())
    if n.reason == "suppressed":
        return f"{label} ({SUPPRESSED.get(detail, detail)})" if detail else label
    if n.reason in ("expired", "skipped") or not detail:
        return label
    return f"{label}: {detail}"


class TripletResults(Publisher):
    """The six result files of each send of a ``triplet`` source (T8)."""

    name = "triplet-results"
    config_keys: ClassVar[dict[str, Key]] = {
        "results_after": Key(
            "duration",
            timedelta(days=3),
            minimum=0,
            help='How long after a send\'s campaign ends its results are published ("0s": '
            "as soon as it ends).",
        ),
    }

    def _sends(self, *, finished: bool) -> Iterator[tuple[FileCampaign, Member]]:
        for found in self.context.reads.file_campaigns(self.source.name, finished=finished):
            member = parse_member(found.path)
            if member is not None and member.type == "MAIL":
                yield found, member

    def _files(
        self, found: FileCampaign, member: Member, due_at: datetime | None
    ) -> Iterator[Publication]:
        send = send_path(member.folder, member.send, member.day)
        for kind in RESULT_TYPES:
            yield Publication(
                key=f"{send}:{kind}",
                path=member_path(member.folder, member.send, kind, member.day),
                detail={"file_id": found.file_id, "campaign_id": found.campaign_id, "kind": kind},
                due_at=due_at,
            )

    def _due_at(self, found: FileCampaign) -> datetime | None:
        if not found.finished or found.finished_at is None:
            return None
        after: timedelta = self.source.options["results_after"]
        return found.finished_at + after

    def due(self, now: datetime) -> Iterable[Publication]:
        for found, member in self._sends(finished=True):
            due_at = self._due_at(found)
            if due_at is not None and due_at <= now:
                yield from self._files(found, member, due_at)

    def planned(self, now: datetime) -> Iterable[Publication]:
        for found, member in self._sends(finished=False):
            due_at = self._due_at(found)
            if due_at is None or due_at > now:
                yield from self._files(found, member, due_at)

    def write(self, publication: Publication, out: IO[bytes]) -> None:
        kind = publication.detail["kind"]
        campaign_id = int(publication.detail["campaign_id"])
        tz = self.context.config.tz
        reads = self.context.reads

        def when(at: datetime) -> str:
            return at.astimezone(tz).strftime("%d/%m/%Y %H:%M:%S")

        rows: Iterable[tuple[Any, ...]]
        if kind in ("ABERTURA", "ABERTURAUNICA"):
            rows = (
                (i.address, when(i.at))
                for i in reads.interactions(campaign_id, "open", first=kind == "ABERTURAUNICA")
            )
        elif kind in ("CLIQUE", "CLIQUEUNICO"):
            rows = (
                (i.address, when(i.at), i.url or "")
                for i in reads.interactions(campaign_id, "click", first=kind == "CLIQUEUNICO")
            )
        elif kind == "RETORNADO":
            rows = ((n.address, when(n.at), motivo(n)) for n in reads.not_sent(campaign_id))
        elif kind == "CANCELADO":
            rows = ((i.address, when(i.at)) for i in reads.interactions(campaign_id, "unsubscribe"))
        else:  # pragma: no cover - the keys are ours
            raise ValueError(f"unknown result file {kind!r}")
        # UTF-8 without a BOM: these files are read by the customer's systems (T8)
        text = io.TextIOWrapper(out, encoding="utf-8", newline="")
        try:
            writer = SafeWriter(text)
            writer.writerow(HEADERS[kind])
            for row in rows:
                writer.writerow(row)
            text.flush()
        finally:
            text.detach()  # `out` is the engine's to close


@hookimpl
def register_publishers(register: Any) -> None:
    register(TripletResults)
