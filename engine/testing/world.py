"""An engine in a test: a store on the test clock, a configuration, a plugin set and a
dispatcher, with what a test does to them — drop a file in (as the collector would import
it), run the engine for some (clock) time or until it has nothing left to send, look at
campaigns and deliveries."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from engine.campaign import Campaign
from engine.clock import TestClock, local_today
from engine.config import Config
from engine.intake.importer import ImportReport, file_digest, import_file
from engine.plugins import Plugins
from engine.plugins.format import FormatContext, Verdict
from engine.sending.dispatcher import Dispatcher
from engine.service import signer_for
from engine.store import Store
from engine.store import schema as t
from engine.testing.store import make_clock, make_config, open_store


class NotImported(AssertionError):
    """The format's ``inspect()`` did not say to import the file: its verdict says why."""

    def __init__(self, path: str, verdict: Verdict) -> None:
        self.verdict = verdict
        why = "; ".join(p.message for p in verdict.problems)
        super().__init__(f"{path}: {verdict.status}" + (f": {why}" if why else ""))


@dataclass
class World:
    """An engine on a test clock. Make one with ``World.open``; ``await world.close()`` at
    the end (it stops the dispatchers and closes a store it opened)."""

    store: Store
    clock: TestClock
    config: Config
    plugins: Plugins
    folder: Path
    dispatchers: list[Dispatcher] = field(default_factory=list)
    #: files dropped in so far (``import_file``)
    files: int = 0
    owns_store: bool = False

    @classmethod
    def open(
        cls,
        folder: Path,
        plugins: Plugins,
        *,
        store: Store | None = None,
        clock: TestClock | None = None,
        **sections: Any,
    ) -> World:
        """A world in ``folder`` (pytest's ``tmp_path``): ``disparo.toml`` written from
        ``sections`` (``accounts={…}``, ``wallets={…}``… as ``write_config`` takes them) and
        read with ``plugins``; ``store`` (default: a new SQLite store in ``folder`` on
        ``clock``, itself a new ``make_clock()`` by default)."""
        clock = clock or make_clock()
        config = make_config(folder, plugins, **sections)
        owns = store is None
        if store is None:
            store = open_store(folder, clock)
        store.inline = True  # only the clock waits: a simulated day runs the same every time
        (folder / "files").mkdir(exist_ok=True)
        return cls(store, clock, config, plugins, folder, owns_store=owns)

    @property
    def today(self) -> date:
        """The processing day on the clock, in the configured time zone (N5)."""
        return local_today(self.clock, self.config.tz)

    def mailing_name(self, seq: int, *params: str) -> str:
        """``mailing_<today>_<seq>[_<param>…].csv``: ``world.mailing_name(1, "cBRAD",
        "webhook")`` names a file of today that wallet BRAD sends with the channel whose
        ``file_word`` is ``webhook``."""
        tail = "".join(f"_{p}" for p in params if p)
        return f"mailing_{self.today:%d%m%y}_{seq:03d}{tail}.csv"

    @property
    def dispatcher(self) -> Dispatcher:
        """The engine's dispatcher (node ``node-a``, made on first use)."""
        if not self.dispatchers:
            self.dispatchers.append(
                Dispatcher(
                    self.store,
                    self.plugins,
                    self.config,
                    self.clock,
                    node="node-a",
                    signer=signer_for(self.config),
                    tick_seconds=1.0,
                )
            )
        return self.dispatchers[0]

    def import_file(
        self,
        path: str,
        data: str | bytes,
        *,
        source: str = "drop",
        format: str = "mailing",
        beside: Mapping[str, str | bytes] | None = None,
    ) -> ImportReport:
        """Import ``data`` as the file ``path`` (relative to a source's root: a folder is a
        wallet) as the collector would: the format's ``inspect()`` must say to import it
        (else ``NotImported``), then its ``prepare()`` and the importer. ``beside``: other
        files listed with it (``{path: data}``), read as its companions when the format says
        so (a mailing's ``.html``, a triplet's CONF and HTML). Returns the report
        (``report.outcome``, ``report.problems``, ``report.campaign_id``)."""
        others = dict(beside or {})
        fmt = self.plugins.formats()[format](
            FormatContext(
                self.config,
                source,
                self.today,
                self.clock.now(),
                words=self.plugins.channel_words(),
            )
        )
        verdict = fmt.inspect(path, {path, *others})
        if verdict.action != "import":
            raise NotImported(path, verdict)
        spool = self._spool(data)
        companions = {c: self._spool(others[c]) for c in verdict.companions if c in others}
        return import_file(
            self.store,
            fmt,
            source=source,
            path=path,
            spool=spool,
            size=spool.stat().st_size,
            mtime=None,
            sha256=file_digest(spool),
            companions=companions,
            actor="test",
        )

    def _spool(self, data: str | bytes) -> Path:
        self.files += 1
        spool = self.folder / "files" / f"in-{self.files}"
        spool.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        return spool

    async def run(self, seconds: float, *, step: float = 1.0) -> None:
        """Tick every dispatcher once per ``step`` (clock) seconds, for ``seconds``."""
        elapsed = 0.0
        while elapsed < seconds:
            for d in self.dispatchers or [self.dispatcher]:
                await d.tick()
            await self.clock.advance(step)
            elapsed += step

    async def run_until_idle(self) -> None:
        """Send everything due now (released batches, retries that are due), waiting for
        real I/O (your channel talking to a loopback server), then stop the dispatcher."""
        await self.dispatcher.run_until_idle()
        self.dispatchers.clear()

    async def close(self) -> None:
        """Stop the dispatchers (in-flight sends finish); close the store if it is ours."""
        for d in self.dispatchers:
            await d.shutdown()
        self.dispatchers.clear()
        if self.owns_store:
            self.store.close()

    @asynccontextmanager
    async def tracking(self) -> AsyncIterator[str]:
        """The tracking endpoint (``[tracking]`` must be configured) with the webhooks of the
        world's plugins mounted, listening on 127.0.0.1 (a free port), for the duration of
        the ``async with``: it gives the base URL to request (``http://127.0.0.1:<port>``).
        A webhook's ``context.apply`` has stored its signals when the request is answered."""
        from engine.feedback.tracking import Tracking

        endpoint = Tracking(self.store, self.config, self.clock, plugins=self.plugins)
        bound = await endpoint.start("127.0.0.1:0")
        try:
            yield f"http://{bound}"
        finally:
            await endpoint.stop()

    def campaign(self, campaign_id: int) -> Campaign:
        """The campaign as the store has it now (``status``, ``counters``…)."""
        found = self.store.campaigns.get(campaign_id)
        if found is None:
            raise LookupError(f"no campaign {campaign_id}")
        return found

    def statuses(self, campaign_id: int) -> dict[str, int]:
        """How many of the campaign's deliveries are in each status (``{"sent": 2}``)."""
        with self.store.read() as c:
            rows = c.execute(
                sa.select(t.deliveries.c.status, sa.func.count())
                .where(t.deliveries.c.campaign_id == campaign_id)
                .group_by(t.deliveries.c.status)
            ).all()
        return {str(status): int(count) for status, count in rows}

    def suppressions(self) -> dict[str, str]:
        """Every suppressed address, with why (``bounce``, ``stop``, ``unsubscribe``…)."""
        return {s.address: s.origin for s in self.store.suppressions.search(limit=100_000)}
