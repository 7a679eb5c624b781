"""``engine/reads_sql.py``, made from the store's SQLAlchemy statements (issue 16, goal 7):
the read-only queries ``engine.reads`` runs without SQLAlchemy, compiled for SQLite and for
PostgreSQL (psycopg) — the SQL text, the order of its parameters when the driver binds them by
position, the values the statement fixes itself (SQLite's ``OFFSET 0``), and each column's
label and how it is read back (``utc``: ``UTCDateTime``; ``json``: a JSON document; ``bool``).

The statements stay the one implementation (``Campaigns.recent`` runs the same
``recent_select``); a test compares the committed module with this output, so it cannot drift.
``python -m engine.store.compiled_reads [FILE]`` writes it; ``--check`` exits 1 when FILE
differs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from pprint import pformat
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import Boolean, TypeDecorator

from engine.config.reference import write_or_check
from engine.store.accounts import counts_select, states_select
from engine.store.campaigns import campaign_select, in_flight_select, recent_select
from engine.store.delivery_errors import for_accounts_select, for_campaign_select, waiting_select
from engine.store.schema import JsonDocument, UTCDateTime
from engine.store.views import batch_flags_select, count_in_batch_select

#: where the repository keeps it
DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "reads_sql.py"
REGENERATE = "python -m engine.store.compiled_reads"


def _param(name: str) -> Any:
    """A parameter the caller binds (valued None here: IN lists render as one parameter
    each, which needs every parameter valued)."""
    return sa.bindparam(name, None)


def _count_in_batch(*, open_: bool, capped: bool) -> Callable[[], sa.Select[Any]]:
    def make() -> sa.Select[Any]:
        cap = _param("cap") if capped else None
        return count_in_batch_select(_param("campaign_id"), _param("batch"), open_=open_, cap=cap)

    return make


#: each query ``engine.reads`` runs: its name and its statement, with bind parameters
STATEMENTS: dict[str, Callable[[], sa.Select[Any]]] = {
    "recent_campaigns": lambda: recent_select(_param("limit")),
    "recent_campaigns_by_status": lambda: recent_select(_param("limit"), _param("status")),
    "account_states": states_select,
    "in_flight": in_flight_select,
    "account_counts": lambda: counts_select(_param("account"), _param("since")),
    "account_errors_since": lambda: for_accounts_select(_param("since")),
    "campaign": lambda: campaign_select(_param("campaign_id")),
    "batch_flags": lambda: batch_flags_select(_param("campaign_id"), _param("batches")),
    **{
        f"count_{'open' if open_ else 'settled'}_in_batch{'_capped' if capped else ''}": (
            _count_in_batch(open_=open_, capped=capped)
        )
        for open_ in (True, False)
        for capped in (True, False)
    },
    "campaign_errors": lambda: for_campaign_select(_param("campaign_id"), _param("limit")),
    "waiting": lambda: waiting_select(_param("campaign_id")),
}


def _dialects() -> dict[str, sa.Dialect]:
    from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
    from sqlalchemy.dialects.sqlite.pysqlite import dialect as sqlite_dialect

    return {"sqlite": sqlite_dialect(), "postgresql": psycopg_dialect()}  # type: ignore[no-untyped-call]


def _kind(column: Any) -> str:
    """How ``engine.reads`` reads the column back: as the driver gives it (``""``) unless its
    type processes results."""
    kind = column.type
    if isinstance(kind, UTCDateTime):
        return "utc"
    if isinstance(kind, JsonDocument | sa.JSON):
        return "json"
    if isinstance(kind, Boolean):
        return "bool"
    if isinstance(kind, TypeDecorator):  # a new type: teach engine.reads to read it first
        raise TypeError(f"{column.key}: {type(kind).__name__} is not read by engine.reads")
    return ""


def compile_reads() -> tuple[dict[str, Any], dict[str, Any]]:
    """(QUERIES, COLUMNS) as ``engine.reads_sql`` holds them."""
    queries: dict[str, Any] = {}
    columns: dict[str, Any] = {}
    dialects = _dialects()
    for name, make in STATEMENTS.items():
        statement = make()
        forms: dict[str, Any] = {}
        for label, dialect in dialects.items():
            # IN lists as one parameter each (not expanded at execution, as SQLAlchemy does)
            compiled = statement.compile(
                dialect=dialect, compile_kwargs={"render_postcompile": True}
            )
            order = tuple(compiled.positiontup or ()) if dialect.positional else None
            fixed = {k: v for k, v in compiled.params.items() if v is not None}
            kinds = {k: _kind(b) for k, b in compiled.binds.items() if k not in fixed}
            forms[label] = (str(compiled), order, fixed, {k: v for k, v in kinds.items() if v})
        queries[name] = forms
        columns[name] = tuple((c.key, _kind(c)) for c in statement.selected_columns)
    return queries, columns


def render_reads() -> str:
    """The text of ``engine/reads_sql.py``."""
    queries, columns = compile_reads()
    return (
        '"""Generated by ``python -m engine.store.compiled_reads`` from the store\'s '
        "SQLAlchemy statements\n(``STATEMENTS`` there): do not edit; regenerate, a test "
        'fails when this differs."""\n\n'
        "from typing import Any\n\n"
        "#: name -> dialect -> (SQL, positional parameter order or None, fixed parameters,\n"
        "#: the kind of each parameter bound specially)\n"
        f"QUERIES: dict[str, dict[str, Any]] = {pformat(queries, width=96)}\n\n"
        "#: name -> the columns' (label or None, kind) (kind: how engine.reads reads it back)\n"
        f"COLUMNS: dict[str, tuple[tuple[str | None, str], ...]] = {pformat(columns, width=96)}\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=REGENERATE, description="Write engine/reads_sql.py from the store's statements."
    )
    parser.add_argument("file", nargs="?", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--check", action="store_true", help="Exit 1 when FILE differs; write nothing."
    )
    args = parser.parse_args(argv)
    return write_or_check(args.file, render_reads(), REGENERATE, args.check)


if __name__ == "__main__":
    sys.exit(main())
