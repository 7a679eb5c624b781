"""Which database errors are worth waiting out: the database is unreachable, restarting, or
busy (a SQLite writer lock held longer than the busy timeout), as opposed to a bug or a bad
schema. The store records an outage while they last (``/healthz`` answers 503), and the
engine's loops back off and try again instead of exiting."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy.exc as sa_exc

#: SQLite's messages for a database that is busy or cannot be reached right now
_SQLITE_TRANSIENT = (
    "database is locked",
    "database table is locked",
    "database is busy",
    "disk i/o error",
    "unable to open database file",
)
#: waits between attempts (seconds) while the database is unavailable: short at first, then
#: every 30 s, so a restarted PostgreSQL is noticed quickly and a long outage costs little
BACKOFF = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0)


def is_transient(exc: BaseException) -> bool:
    """Is ``exc`` a database error that goes away by itself (retry later)?"""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, (sa_exc.TimeoutError, sa_exc.InterfaceError)):
        return True  # the pool's wait for a connection; a connection gone mid-use
    if isinstance(exc, sa_exc.OperationalError):
        orig = getattr(exc, "orig", None)
        module = type(orig).__module__ if orig is not None else ""
        if module.startswith("sqlite3"):
            text = str(orig).lower()
            return any(t in text for t in _SQLITE_TRANSIENT)
        # PostgreSQL: connection refused or lost, the server shutting down or starting
        # (57P01, 57P03), a deadlock or serialisation failure (40001, 40P01)
        return True
    return False


def backoff(attempt: int) -> float:
    """Seconds to wait before attempt ``attempt + 1`` (``attempt`` from 0)."""
    return BACKOFF[min(attempt, len(BACKOFF) - 1)]


def describe(exc: BaseException) -> str:
    """One line for logs and ``/healthz``: the driver's message, without SQL or traceback."""
    orig = getattr(exc, "orig", None) or exc
    text = " ".join(str(orig).split())
    return f"{type(orig).__name__}: {text[:300]}"


@dataclass(frozen=True)
class Outage:
    """The database has been failing since ``since`` with ``error``."""

    since: datetime
    error: str
    #: a write failed (a read that works does not end the outage: SQLite still reads while
    #: another process holds the write lock)
    writes: bool
