"""The store: every table and every query of disparo (nothing outside this package builds SQL).

``Store`` owns the database engine; each domain has its own module of queries, reached as
an attribute (``store.audit``, ``store.commands``…). Writers use ``store.write()`` (on
SQLite a ``BEGIN IMMEDIATE`` transaction), readers ``store.read()``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import import_module
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL

from engine.clock import Clock, RealClock
from engine.store import migrate
from engine.store.db import WRITE_LOCK, create_db_engine, database_url
from engine.store.errors import Outage, describe, is_transient

if TYPE_CHECKING:
    from engine.store.accounts import Accounts
    from engine.store.audit import Audit
    from engine.store.campaigns import Campaigns
    from engine.store.claims import Claims
    from engine.store.commands import Commands
    from engine.store.delivery_errors import DeliveryErrors
    from engine.store.engine_log import EngineLog
    from engine.store.engines import Engines
    from engine.store.feedback import Feedback
    from engine.store.files import Files
    from engine.store.groups import Groups
    from engine.store.imports import Imports
    from engine.store.lists import Lists
    from engine.store.mailboxes import Mailboxes
    from engine.store.outcomes import Outcomes
    from engine.store.publications import Publications
    from engine.store.results import Results
    from engine.store.suppressions import Suppressions
    from engine.store.views import Views

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")
Q = TypeVar("Q")


class _Domain(Generic[Q]):
    """A store attribute whose module of queries is imported at its first use, then kept on
    the store (a plain attribute from then on): a command that lists campaigns does not pay
    for importing the queries of imports, feedback or lists (issue 16, goal 7)."""

    def __init__(self, module: str, name: str) -> None:
        self.module = module
        self.name = name
        self.attribute = name.lower()

    def __set_name__(self, owner: type, attribute: str) -> None:
        self.attribute = attribute

    @overload
    def __get__(self, store: None, owner: type | None = None) -> _Domain[Q]: ...

    @overload
    def __get__(self, store: Store, owner: type | None = None) -> Q: ...

    def __get__(self, store: Store | None, owner: type | None = None) -> Q | _Domain[Q]:
        if store is None:
            return self
        with store._domains_lock:
            found: Any = store.__dict__.get(self.attribute)
            if found is None:
                found = getattr(import_module(self.module), self.name)(store)
                store.__dict__[self.attribute] = found
        return found  # type: ignore[no-any-return]


class Store:
    """The database, with its queries grouped by domain (each imported at its first use)."""

    audit: _Domain[Audit] = _Domain("engine.store.audit", "Audit")
    commands: _Domain[Commands] = _Domain("engine.store.commands", "Commands")
    files: _Domain[Files] = _Domain("engine.store.files", "Files")
    imports: _Domain[Imports] = _Domain("engine.store.imports", "Imports")
    campaigns: _Domain[Campaigns] = _Domain("engine.store.campaigns", "Campaigns")
    claims: _Domain[Claims] = _Domain("engine.store.claims", "Claims")
    accounts: _Domain[Accounts] = _Domain("engine.store.accounts", "Accounts")
    results: _Domain[Results] = _Domain("engine.store.results", "Results")
    suppressions: _Domain[Suppressions] = _Domain("engine.store.suppressions", "Suppressions")
    feedback: _Domain[Feedback] = _Domain("engine.store.feedback", "Feedback")
    mailboxes: _Domain[Mailboxes] = _Domain("engine.store.mailboxes", "Mailboxes")
    publications: _Domain[Publications] = _Domain("engine.store.publications", "Publications")
    lists: _Domain[Lists] = _Domain("engine.store.lists", "Lists")
    outcomes: _Domain[Outcomes] = _Domain("engine.store.outcomes", "Outcomes")
    views: _Domain[Views] = _Domain("engine.store.views", "Views")
    engines: _Domain[Engines] = _Domain("engine.store.engines", "Engines")
    errors: _Domain[DeliveryErrors] = _Domain("engine.store.delivery_errors", "DeliveryErrors")
    engine_log: _Domain[EngineLog] = _Domain("engine.store.engine_log", "EngineLog")
    groups: _Domain[Groups] = _Domain("engine.store.groups", "Groups")

    def __init__(self, engine: Engine, clock: Clock | None = None) -> None:
        self.engine = engine
        self.clock: Clock = clock or RealClock()
        self.inline = False
        self._checkpointing = threading.Lock()
        self._checkpointer: threading.Thread | None = None
        #: set while the database fails with transient errors (``is_transient``)
        self.outage: Outage | None = None
        self._outage_lock = threading.Lock()
        self._domains_lock = threading.Lock()
        #: SQLite: this process's writers queue here, one at a time, so that a writer waits
        #: on a mutex released at the other's commit, not in SQLite's busy handler (which
        #: sleeps 1, 2, 5… up to 100 ms between tries); other processes still contend
        #: through the busy handler (issue 16: the write-lock waits of ``run --workers``)
        self._writer = threading.RLock()

    @classmethod
    def open(
        cls,
        url: str | URL,
        *,
        clock: Clock | None = None,
        upgrade: bool = True,
    ) -> Store:
        """Connect to ``url`` and (by default) bring the schema up to date."""
        store = cls(create_db_engine(database_url(url) if isinstance(url, str) else url), clock)
        if upgrade:
            store.upgrade()
        return store

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    def upgrade(self) -> tuple[str | None, str]:
        """Run pending migrations; return (revision before, revision after)."""
        return migrate.upgrade(self.engine)

    def revision(self) -> str | None:
        return migrate.current_revision(self.engine)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction (a consistent snapshot)."""
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except Exception as exc:
            self._failed(exc, write=False)
            raise
        self._worked(write=False)

    @contextmanager
    def write(self, *, synced: bool = True) -> Iterator[Connection]:
        """A write transaction: committed on success, rolled back on error. On SQLite this
        process's writers take turns (``_writer``), and the time they waited for it is
        counted with the write lock's (``db.WRITE_LOCK``).

        ``synced=False`` (SQLite only): the commit does not wait for the disk (``synchronous =
        NORMAL`` for this one transaction; the next synced commit syncs it with its own). Only
        for a write whose loss at a power cut changes nothing: a claim (deliveries leased for
        sending), whose sends are durable only with their confirmation, a synced commit after
        it — lost together, they are what an expired lease is, sent again (README "Crash
        safety")."""
        if self.engine.dialect.name != "sqlite":
            yield from self._write()
            return
        start = time.perf_counter()
        with self._writer:
            WRITE_LOCK["waited"] += time.perf_counter() - start
            yield from self._write(synced=synced)

    def _write(self, *, synced: bool = True) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                if conn.dialect.name == "sqlite":
                    conn = conn.execution_options(sqlite_begin="IMMEDIATE")
                    if not synced:
                        with _unsynced(conn), conn.begin():
                            yield conn
                        return
                with conn.begin():
                    yield conn
        except Exception as exc:
            self._failed(exc, write=True)
            raise
        self._worked(write=True)

    def _failed(self, exc: BaseException, *, write: bool) -> None:
        if not is_transient(exc):
            return
        with self._outage_lock:
            since = self.outage.since if self.outage is not None else self.clock.now()
            writes = write or (self.outage is not None and self.outage.writes)
            self.outage = Outage(since, describe(exc), writes)

    def _worked(self, *, write: bool) -> None:
        if self.outage is None or (self.outage.writes and not write):
            return
        with self._outage_lock:
            self.outage = None

    async def run(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run a blocking store call in a worker thread, so the event loop never waits on I/O.

        With ``inline`` set (tests on a test clock), the call runs right here instead: then the
        only waits are on the clock, and a simulated day runs deterministically.
        """
        if self.inline:
            return fn(*args, **kwargs)
        return await asyncio.to_thread(fn, *args, **kwargs)

    def ping(self) -> None:
        """Raise when the database does not answer (for ``/healthz``)."""
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    def checkpoint(self) -> None:
        """SQLite: copy the write-ahead log into the database (PASSIVE: never blocks others)."""
        if self.dialect != "sqlite":
            return
        with self.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def checkpoint_soon(self) -> None:
        """Checkpoint in a background thread (one at a time): after a big import the copy of
        its log (~1.5 s per million rows) runs beside the engine's work, not before the
        import can report."""
        if self.dialect != "sqlite" or not self._checkpointing.acquire(blocking=False):
            return

        def run() -> None:
            try:
                self.checkpoint()
            except Exception:  # the next commit will checkpoint instead
                log.warning("background WAL checkpoint failed", exc_info=True)
            finally:
                self._checkpointing.release()

        self._checkpointer = threading.Thread(target=run, name="wal-checkpoint", daemon=True)
        self._checkpointer.start()

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.join()
        self.engine.dispose()


@contextmanager
def _unsynced(conn: Connection) -> Iterator[None]:
    """SQLite's ``synchronous = NORMAL`` on this connection while the block runs (set through
    the driver, outside any transaction), ``FULL`` again after it (``db._sqlite_connect``)."""
    raw = conn.connection.dbapi_connection
    assert raw is not None
    raw.execute("PRAGMA synchronous=NORMAL")
    try:
        yield
    finally:
        try:
            raw.execute("PRAGMA synchronous=FULL")
        except Exception:  # never back in the pool with NORMAL
            conn.invalidate()


__all__ = ["Store"]
