"""Rows of contact files as they cross processes: the rows a format makes (``ContactRow``,
``RejectedRow``), and ``StagingFile``, where another process stages a big file's tail on
SQLite (issue 16, goal 4) for the import session to adopt.

Pure and light (the standard library only): the process that reads a file's tail imports
this module, not the store (SQLAlchemy) or the formats.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from itertools import repeat
from operator import is_not, itemgetter
from pathlib import Path
from typing import Any, NamedTuple

#: the import's staging table (a session's temporary table, a ``StagingFile``'s table)
STAGING = "import_rows"
#: (row_no, identity, external_key, name, email, phone, fields as JSON text, message, prospect)
StagedRow = tuple[
    int, str, str | None, str | None, str | None, str | None, str, str | None, bool | None
]


class ContactRow(NamedTuple):
    """One usable row, after hygiene (N24–N27).

    A named tuple, not a dataclass: a million of them are made per big file (~0.2 µs each
    against ~0.9 µs for a frozen dataclass). ``fields`` is the JSON object of the extra
    columns, already encoded.
    """

    line: int
    identity: str
    external_key: str | None
    name: str | None
    email: str | None
    phone: str | None
    fields: str
    message: str | None = None
    prospect: bool | None = None


class RejectedRow(NamedTuple):
    """A row that cannot be used, with why (listed in ``<name>.rejeitados.csv``, F11)."""

    line: int
    code: str
    rule: str
    reason: str
    reason_pt: str
    values: tuple[str, ...]


#: the staging table's columns on SQLite (a session's temporary table, a ``StagingFile``)
SQLITE_STAGING = (
    "row_no INTEGER PRIMARY KEY, identity TEXT NOT NULL, external_key TEXT, name TEXT, "
    "email TEXT, phone TEXT, fields TEXT, message TEXT, prospect INTEGER"
)


class StagingFile:
    """Rows staged by another process into a SQLite file of their own (a file's tail,
    ``ImportSpec.split``), for an import session on SQLite to ``adopt``: the staging table's
    layout, written without a journal (the file is thrown away whatever happens)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0
        self.has_messages = False
        self._con = sqlite3.connect(path, isolation_level=None)
        self._con.execute("PRAGMA page_size=16384")
        self._con.execute("PRAGMA journal_mode=OFF")
        self._con.execute("PRAGMA synchronous=OFF")
        self._con.execute(f"CREATE TABLE {STAGING} ({SQLITE_STAGING})")
        self._con.execute("BEGIN")

    def stage(self, rows: Sequence[StagedRow]) -> None:
        """Add parsed rows (in file order)."""
        if not rows:
            return
        if not self.has_messages:
            self.has_messages = any(map(is_not, map(itemgetter(7), rows), repeat(None)))
        self._con.executemany(f"INSERT INTO {STAGING} VALUES (?,?,?,?,?,?,?,?,?)", rows)  # noqa: S608
        self.rows += len(rows)

    def close(self) -> None:
        """Write the rows out and close the file."""
        self._con.execute("COMMIT")
        self._con.close()

    def __getstate__(self) -> dict[str, Any]:  # crosses back to the importing process closed
        return {"path": self.path, "rows": self.rows, "has_messages": self.has_messages}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


__all__ = [
    "SQLITE_STAGING",
    "STAGING",
    "ContactRow",
    "RejectedRow",
    "StagedRow",
    "StagingFile",
]
