"""Conditions an operator fixes, said in one line: a full spool disk, a database that is full or
cannot be reached. The collector reports them as the poll's error, without a traceback; the
file stays on its source, nothing of it is imported, and the next poll takes it again.

And the one database error a file itself causes (data the database refuses): the file is
rejected with that reason instead of being retried forever.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import psycopg
import sqlalchemy as sa

#: a disk (or a quota) with no room left
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
#: the drivers' errors for a database that cannot do the work now (full, locked, gone)
_DATABASE_DOWN = (
    sqlite3.OperationalError,
    sqlite3.InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


class Unavailable(Exception):
    """The poll cannot go on now; ``str()`` is the one line to show. Nothing was half done."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _driver_error(exc: BaseException) -> BaseException:
    return exc.orig if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None else exc


def operational(
    exc: BaseException, spool: Path | None = None, *, by_hand: bool = False
) -> str | None:
    """The one line for ``exc`` when it is an operational condition, else None (a bug, or a
    problem of the file's own). ``by_hand``: the file was given to ``disparo import``, which
    is run again, rather than taken from a source, which polls again."""
    if isinstance(exc, OSError) and exc.errno in _FULL:
        where = f" ({spool})" if spool is not None else ""
        if by_hand:
            return (
                f"the disk is full{where}: {exc.strerror}; nothing of the file was imported: "
                "run the import again once there is room"
            )
        return (
            f"the spool disk is full{where}: {exc.strerror}; the file stays on the source and "
            "is taken at the next poll once there is room"
        )
    orig = _driver_error(exc)
    database = isinstance(orig, _DATABASE_DOWN) or (
        isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated
    )
    if not database:
        return None
    text = _first_line(orig)
    sqlstate = str(getattr(orig, "sqlstate", "") or "")
    full = (
        getattr(orig, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
        or sqlstate.startswith("53")  # PostgreSQL: insufficient resources (53100 disk full)
    )
    stays = "" if by_hand else "it stays on the source and "
    again = "run the import again" if by_hand else "is taken at the next poll"
    if full:
        return (
            f"the database is full ({text}): nothing of the file was imported; {stays}"
            f"{again} once there is room"
        )
    return (
        f"the database cannot do the work now ({text}): nothing of the file was imported; "
        f"{stays}{again}"
    )


def refused_data(exc: BaseException) -> str | None:
    """What the database said when it refused the file's own data (PostgreSQL's DataError),
    else None."""
    orig = _driver_error(exc)
    if isinstance(orig, (psycopg.DataError, sqlite3.DataError)):
        return _first_line(orig)
    return None
