"""Schema migrations with Alembic, run from code (``disparo db upgrade`` and at every start)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from engine.reads import quick_head

# Alembic (with Mako under it, ~12 MB) is imported when a migration function runs: importing
# the store does not load it.
if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

MIGRATIONS = Path(__file__).parent / "migrations"
#: any constant: serialises concurrent upgrades of one PostgreSQL database
_PG_LOCK_ID = 0x6469_7370_6172_6F


def alembic_config(connection: Connection | None = None) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest migration this code knows."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def at_head(engine: Engine) -> bool:
    """Whether the database is at this code's head revision, asked with one query and no
    Alembic: what every command that opens the store checks before it would upgrade."""
    head = quick_head()
    if head is None:
        return False
    try:
        with engine.connect() as conn:
            found = [r[0] for r in conn.exec_driver_sql("SELECT version_num FROM alembic_version")]
    except DBAPIError:  # no table yet: never migrated
        return False
    return found == [head]


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None: never migrated)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Bring the database to ``revision``; return (before, after).

    Safe when several engine processes start at once: the whole upgrade runs in one
    transaction holding the database's write lock (SQLite ``BEGIN IMMEDIATE``, PostgreSQL
    an advisory lock), and the current revision is read inside it.
    """
    if revision == "head" and at_head(engine):
        head = quick_head()
        assert head is not None
        return head, head
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK_ID})
            before = MigrationContext.configure(conn).get_current_revision()
            if before != head_revision() or revision != "head":
                command.upgrade(alembic_config(conn), revision)
            after = MigrationContext.configure(conn).get_current_revision()
    assert after is not None
    return before, after
