"""The ``listsync-exports`` publisher (S2, S3): a list sync source's exports, written to its
``exports.folder`` on the schedule ``exports.cron`` (in ``engine.time_zone``).

- ``unsubscribed_YYYYMMDD.csv``: every opt-out of the list's contacts since the last one,
  whatever its origin (an unsubscribe link or one-click, a STOP reply, a complaint, an
  operator's suppression, a list file's opt-out column), with the origin and the time;
- ``stats_YYYYMMDD.csv``: opens and clicks since the last one, per contact and message;
- ``cumulative_YYYYMMDD.csv``: both in one file (a ``type`` column);
- ``sms_outcomes_YYYYMMDD.csv``: each status of each SMS of the list's messages since the
  last one, with its error;
- ``subscribed_YYYYMMDD.csv``: the list's active members now.

Each file kind is a chain of publications (the ledger's, ``engine/store/publications.py``):
an incremental file covers the event range ``[from, to)`` written in its ``detail`` — from
where the published one before it ended to the horizon when it was planned
(``engine/store/lists.py`` says why nothing can appear below it later). The next file is
planned only once that one is published, so the union of the files is the event log, each
event once, whatever failed or crashed in between (S3). A second file of a kind on one day is
``…_2.csv``, then ``_3``: none is ever written over another.

Runs: at each time of the cron (the latest one that has passed, when the engine was down: a
single file covering everything since, not one per missed time). ``disparo publish SOURCE``
runs the exports at once: a run already due is that run; otherwise it is an extra run (the
day's next number), and the schedule goes on as before.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import IO, TYPE_CHECKING, Any, ClassVar

from engine import hookimpl
from engine.config import Key, SourceSettings
from engine.csvsafe import SafeWriter
from engine.plugins.publisher import Publication, Publisher
from engine.plugins.source import join, unsafe_reason

if TYPE_CHECKING:  # the store (SQLAlchemy) is imported where it is used, not at start-up
    from engine.store.lists import Member, Range

#: the files an export can write, in the order they are written
FILES = ("unsubscribed", "stats", "cumulative", "sms_outcomes", "subscribed")
#: the files that cover what happened since the previous one (S3); ``subscribed`` is a snapshot
INCREMENTAL = frozenset({"unsubscribed", "stats", "cumulative", "sms_outcomes"})

CONTACT = ("email", "phone", "external_key", "name")
COLUMNS: dict[str, tuple[str, ...]] = {
    "unsubscribed": (
        "event_id",
        *CONTACT,
        "origin",
        "unsubscribed_at",
        "campaign",
        "reason",
    ),
    "stats": (
        *CONTACT,
        "campaign",
        "campaign_name",
        "opens",
        "clicks",
        "first_open",
        "last_click",
    ),
    "cumulative": (
        "type",
        "event_id",
        *CONTACT,
        "campaign",
        "campaign_name",
        "opens",
        "clicks",
        "first_open",
        "last_click",
        "origin",
        "unsubscribed_at",
        "reason",
    ),
    "sms_outcomes": (
        "event_id",
        "phone",
        "external_key",
        "name",
        "campaign",
        "campaign_name",
        "channel",
        "delivery",
        "status",
        "error",
        "at",
    ),
    "subscribed": (*CONTACT, "added_at"),
}
#: how times are written: local time in engine.time_zone (as every file disparo writes)
TIME = "%Y-%m-%d %H:%M:%S"


def check_files(files: tuple[str, ...]) -> str | None:
    unknown = [f for f in files if f not in FILES]
    if unknown:
        return f"unknown export {', '.join(unknown)}; the exports are: {', '.join(FILES)}"
    twice = sorted({f for f in files if files.count(f) > 1})
    if twice:
        return f"{', '.join(twice)} given twice"
    if not files:
        return f"name at least one export: {', '.join(FILES)}"
    return None


def check_folder(folder: str) -> str | None:
    text = folder.strip().strip("/")
    why = unsafe_reason(text) if text else "it is the source's own folder"
    if why:
        return (
            f'the exports need a folder of their own under the source\'s, such as "esiti" '
            f'({why}); got "{folder}"'
        )
    return None


EXPORT_KEYS: dict[str, Key] = {
    "files": Key(
        "strings",
        help="Which files to write: unsubscribed, stats, cumulative (unsubscribed and stats "
        "in one file), sms_outcomes, subscribed.",
        check=check_files,
    ),
    "folder": Key(
        "str",
        "exports",
        "The folder on the same source they are written to (created when missing; the list "
        "files are never read from it).",
        check=check_folder,
    ),
    "cron": Key(
        "cron",
        "0 5 * * *",
        "When they are written, in engine.time_zone; `disparo publish SOURCE` writes them at "
        "once as well.",
    ),
}


class ListSyncExports(Publisher):
    """A list sync source's exports (S2): unsubscribed, stats, cumulative, sms_outcomes and
    subscribed files, each incremental one covering exactly the events since the previous
    (S3)."""

    name = "listsync-exports"
    config_keys: ClassVar[dict[str, Key]] = {
        "exports": Key(
            "section",
            None,
            "[sources.NAME.exports]: what the list sync writes back to the source, and when "
            "(none without it).",
            keys=EXPORT_KEYS,
        ),
    }

    @classmethod
    def validate_settings(cls, settings: SourceSettings) -> list[tuple[str, str]]:
        if settings.format != "listsync":
            return [
                (
                    "publish",
                    f'`{cls.name}` writes a list\'s exports: it needs `format = "listsync"` '
                    "and the source's `list`",
                )
            ]
        return []

    # -- what is due ---------------------------------------------------------------------

    @property
    def exports(self) -> Mapping[str, Any] | None:
        found = self.source.options.get("exports")
        return found if isinstance(found, Mapping) else None

    @property
    def code(self) -> str:
        return str(self.source.options["list"])

    def _slot(self, now: datetime) -> datetime:
        """The latest time of the schedule at or before ``now``."""
        from croniter import croniter

        assert self.exports is not None
        local = now.astimezone(self.context.config.tz) + timedelta(microseconds=1)
        found: datetime = croniter(self.exports["cron"], local).get_prev(datetime)
        return found

    def next_due(self, now: datetime) -> datetime | None:
        if self.exports is None:
            return None
        from croniter import croniter

        local = now.astimezone(self.context.config.tz)
        found: datetime = croniter(self.exports["cron"], local).get_next(datetime)
        return found

    def due(self, now: datetime) -> Iterator[Publication]:
        if self.exports is None:
            return
        slot = self._slot(now)
        for kind in self.exports["files"]:
            planned = self._next(kind, slot)
            if planned is not None:
                yield planned

    def on_demand(self, now: datetime) -> Iterator[Publication]:
        if self.exports is None:
            return
        slot = self._slot(now)
        for kind in self.exports["files"]:
            if self._next(kind, slot) is None:  # else the run due now is the one asked for
                extra = self._next(kind, now, on_demand=True)
                if extra is not None:
                    yield extra

    def _next(self, kind: str, slot: datetime, *, on_demand: bool = False) -> Publication | None:
        """The chain's next file for the run at ``slot``, None when that run has its file (or
        the chain's newest file is still pending: it goes first)."""
        assert self.exports is not None
        store = self.context.store
        last = store.publications.last(self.source.name, self.name, kind)
        if last is not None:
            if last.status != "published":
                return None
            if datetime.fromisoformat(last.detail["slot"]) >= slot:
                return None
        local = slot.astimezone(self.context.config.tz)
        day = local.strftime("%Y%m%d")
        n = int(last.detail.get("n", 1)) + 1 if last and last.detail.get("day") == day else 1
        leaf = f"{kind}_{day}.csv" if n == 1 else f"{kind}_{day}_{n}.csv"
        detail: dict[str, Any] = {
            "file": kind,
            "list": self.code,
            "slot": slot.isoformat(),
            "day": day,
            "n": n,
            "on_demand": on_demand,
        }
        if kind in INCREMENTAL:
            start = 0
            if last is not None and last.detail.get("list") == self.code and "range" in last.detail:
                from engine.store.lists import Range

                start = Range.of(last.detail["range"]).hi
            detail["range"] = store.lists.horizon(start).as_json()
        return Publication(
            key=f"{kind}:{slot.isoformat()}",
            path=join(str(self.exports["folder"]), leaf),
            detail=detail,
            chain=kind,
            previous=last.key if last is not None else None,
        )

    # -- writing -------------------------------------------------------------------------

    def write(self, publication: Publication, out: IO[bytes]) -> None:
        detail = publication.detail
        kind = str(detail["file"])
        text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=False)
        try:
            writer = SafeWriter(text)
            rows = self._rows(kind, str(detail["list"]), detail)
            header = COLUMNS[kind] + (self._custom_fields() if kind == "subscribed" else ())
            writer.writerow(header)
            for row in rows:
                writer.writerow(row)
            text.flush()
        finally:
            text.detach()  # ``out`` is the engine's: it closes it

    def _custom_fields(self) -> tuple[str, ...]:
        """The custom fields the source maps (``columns``), in order: the subscribed file's
        last columns."""
        from plugins.formats.listsync import CORE_FIELDS

        columns = self.source.options.get("columns") or {}
        return tuple(name for name in columns if name not in CORE_FIELDS)

    def _rows(self, kind: str, code: str, detail: Mapping[str, Any]) -> Iterable[list[Any]]:
        store = self.context.store
        if kind == "subscribed":
            return self._subscribed(code)
        from engine.store.lists import Range

        r = Range.of(detail["range"])
        if kind == "unsubscribed":
            return (self._opt_out(o) for o in store.lists.opt_outs(code, r))
        if kind == "stats":
            return (self._stat(s) for page in store.lists.stats(code, r) for s in page)
        if kind == "cumulative":
            return self._cumulative(code, r)
        return (
            [
                o.event_id,
                o.address or "",
                o.external_key or "",
                o.name or "",
                o.campaign_id,
                o.campaign,
                o.channel,
                o.delivery_id or "",
                o.status,
                o.error or "",
                self._time(o.at),
            ]
            for page in store.lists.outcomes(code, r)
            for o in page
        )

    def _time(self, value: datetime | None) -> str:
        return value.astimezone(self.context.config.tz).strftime(TIME) if value else ""

    @staticmethod
    def _contact(m: Member) -> list[Any]:
        return [m.email or "", m.phone or "", m.external_key or "", m.name or ""]

    def _opt_out(self, o: Any) -> list[Any]:
        return [
            o.event_id,
            *self._contact(o.member),
            o.origin,
            self._time(o.at),
            o.campaign_id or "",
            o.reason or "",
        ]

    def _stat(self, s: Any) -> list[Any]:
        return [
            *self._contact(s.member),
            s.campaign_id,
            s.campaign,
            s.opens,
            s.clicks,
            self._time(s.first_open),
            self._time(s.last_click),
        ]

    def _cumulative(self, code: str, r: Range) -> Iterator[list[Any]]:
        store = self.context.store
        for o in store.lists.opt_outs(code, r):
            opt = self._opt_out(o)
            yield ["unsubscribed", opt[0], *opt[1:5], opt[7], "", "", "", "", "", *opt[5:7], opt[8]]
        for page in store.lists.stats(code, r):
            for s in page:
                yield ["stats", "", *self._stat(s), "", "", ""]

    def _subscribed(self, code: str) -> Iterator[list[Any]]:
        custom = self._custom_fields()
        for page in self.context.store.lists.subscribed(code):
            for m in page:
                yield [
                    *self._contact(m),
                    self._time(m.added_at),
                    *(m.fields.get(name, "") for name in custom),
                ]


@hookimpl
def register_publishers(register: Any) -> None:
    register(ListSyncExports)


__all__ = ["COLUMNS", "FILES", "INCREMENTAL", "ListSyncExports"]
