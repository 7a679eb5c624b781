"""Database engines: SQLite (WAL, foreign keys, real transactions) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import ConnectionPoolEntry

SQLITE_BUSY_TIMEOUT_MS = 30_000
#: the page cache of every SQLite connection, in KiB (``PRAGMA cache_size=-N``)
SQLITE_CACHE_KIB = 65_536
#: the page cache while a big statement sorts, in KiB: SQLite lets each sorter (ORDER BY,
#: GROUP BY, a window's PARTITION BY) hold as much memory as the page cache before it spills
#: to a temporary file, so three sorters of a million-row campaign held ~200 MB (issue 16)
SQLITE_SORT_CACHE_KIB = 8_192


def _sqlite_connect(dbapi_connection: sqlite3.Connection, record: ConnectionPoolEntry) -> None:
    # pysqlite's own transaction handling starts transactions late and never for DDL; turn it
    # off and let the "begin" hook below emit BEGIN (or BEGIN IMMEDIATE for writers).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # 16 KiB pages (before WAL is on; only a new database takes it): a million-contact
    # import measured 10.8 s against 15.9 s with the default 4 KiB
    cursor.execute("PRAGMA page_size=16384")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    # WAL + FULL: a commit is on disk when it returns (the log is synced at each commit). With
    # NORMAL the last commits could vanish on power loss after the collector had moved their
    # file to processed/: a file lost, or a message sent twice. Cost measured (bench_import
    # prints both): a million-row import 80k rows/s against 86k with NORMAL (its commit syncs
    # ~0.8 s of log the checkpoint would have synced later); a small commit 0.16 ms more
    cursor.execute("PRAGMA synchronous=FULL")
    # 64 MiB of page cache (default 8 MiB): a million-contact import updates indexes in
    # random order and would otherwise re-read pages from disk
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cursor.close()


#: this process's writes on SQLite and the seconds they waited for the write lock (at their
#: BEGIN IMMEDIATE, behind another process's write): what several engine processes on one
#: SQLite file cost each other; an engine logs it when it stops
WRITE_LOCK = {"writes": 0, "waited": 0.0}


def _sqlite_begin(conn: Any) -> None:
    # Writers take the write lock at BEGIN (IMMEDIATE): two writers never deadlock on a lock
    # upgrade, and a claim (UPDATE … RETURNING) sees the latest committed state.
    mode = conn.get_execution_options().get("sqlite_begin", "")
    if not mode:
        conn.exec_driver_sql("BEGIN")
        return
    start = time.perf_counter()
    conn.exec_driver_sql(f"BEGIN {mode}")
    WRITE_LOCK["waited"] += time.perf_counter() - start
    WRITE_LOCK["writes"] += 1


def database_url(url: str, password: str | None = None) -> URL:
    """The SQLAlchemy URL, with the password (from its secret reference) filled in."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if password is not None and parsed.get_backend_name() == "postgresql":
        parsed = parsed.set(password=password)
    return parsed


def create_db_engine(url: str | URL, *, echo: bool = False) -> Engine:
    """An engine for ``url`` configured for disparo's access patterns."""
    parsed = make_url(url) if isinstance(url, str) else url
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            parsed,
            echo=echo,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        )
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if backend == "postgresql":
        return create_engine(parsed, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=10)
    raise ValueError(f"unsupported database {backend!r}: use sqlite or postgresql")
