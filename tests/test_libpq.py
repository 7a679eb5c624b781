"""``engine.libpq``: the read-only PostgreSQL connection of ``engine.reads`` through libpq
itself (issue 16, goal 7) gives exactly what psycopg gives — every compiled query of
``engine.reads_sql`` on a store with campaigns of every status, accounts, errors and batches,
and values of every type the store uses —; a type it does not read is left to psycopg; a
refused connection says libpq's own words, and the reader then leaves the store to its own
path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from engine import libpq
from engine.reads import BINDERS, QuickReader
from engine.reads_sql import QUERIES
from engine.store import Store
from tests.test_reads import _batches

pytestmark = pytest.mark.postgres


def _params(url: str) -> dict[str, Any]:
    reader = QuickReader._connect(url, None)
    assert reader is not None and reader._psycopg_params is not None, "libpq is loaded here"
    params = dict(reader._psycopg_params)
    reader.close()
    return params


def _pair(url: str) -> tuple[libpq.Connection, psycopg.Connection[Any]]:
    params = _params(url)
    return libpq.Connection(params), psycopg.connect(**params, autocommit=True)


#: values for every parameter of the compiled queries
NOW = datetime.now(UTC)
ARGS: dict[str, Any] = {
    "limit": 50,
    "status": "sending",
    "account": "acct1",
    "since": NOW - timedelta(days=2),
    "campaign_id": 3,
    "batches": 10,
    "batch": 5,
    "cap": 5_000,
}


def test_every_compiled_query_reads_as_psycopg_reads_it(pg_url: str, clock: Any) -> None:
    store = Store.open(pg_url, clock=clock)
    try:
        _batches(store, NOW)  # campaigns of every status, accounts, errors, batches
    finally:
        store.close()
    ours, theirs = _pair(pg_url)
    try:
        non_empty = 0
        for name, forms in sorted(QUERIES.items()):
            sql, order, fixed, kinds = forms["postgresql"]
            values = {**fixed, **{k: v for k, v in ARGS.items() if f"%({k})s" in sql}}
            for param, kind in kinds.items():
                values[param] = BINDERS[kind]["postgresql"](values[param])
            bound: Any = values if order is None else tuple(values[p] for p in order)
            expected = [tuple(r) for r in theirs.execute(sql, bound).fetchall()]
            found = ours.query(sql, bound)
            assert found == expected, name
            assert [[type(v) for v in r] for r in found] == [
                [type(v) for v in r] for r in expected
            ], name
            non_empty += bool(found)
        assert non_empty >= len(QUERIES) - 2, "the store's data reaches most queries"
    finally:
        ours.close()
        theirs.close()


TYPED = """SELECT 1::int2, 70000::int4, 9000000000::int8, 1.5::float4, 2.25::float8,
    12.340::numeric, 'NaN'::numeric, true, false, 'ação ✓'::text, 'x'::varchar(3),
    'ab'::char(4), '2026-11-23'::date, '2026-11-23 15:00:00.123456'::timestamp,
    '2026-11-23 15:00:00'::timestamp,
    '{"a": [1, "é", null]}'::jsonb, '[1, 2]'::json, NULL::text, NULL::int, 'a%b'"""


def test_values_of_every_type_read_as_psycopg_reads_them(pg_url: str) -> None:
    ours, theirs = _pair(pg_url)
    try:
        expected = [tuple(r) for r in theirs.execute(TYPED).fetchall()]
        found = ours.query(TYPED)
        assert repr(found) == repr(expected)  # NaN is not equal to itself
        assert [type(v) for v in found[0]] == [type(v) for v in expected[0]]
        assert found[0][6].is_nan() and isinstance(found[0][5], Decimal)
        # parameters bound as psycopg binds them: ints by size, text, times, booleans, NULL
        sql = (
            "SELECT %(a)s + 1, %(b)s::text || %(b)s, %(c)s::timestamp, %(d)s, %(e)s::int, "
            "%(f)s * 2, %(g)s::bigint, '100%%'"
        )
        args = {
            "a": 41,
            "b": "ç%",
            "c": datetime(2026, 11, 23, 15, 0, 1, 5),
            "d": True,
            "e": None,
            "f": 0.5,
            "g": 2**40,
        }
        assert ours.query(sql, args) == [tuple(r) for r in theirs.execute(sql, args).fetchall()]
        positional = "SELECT %s::int + %s::int"
        assert ours.query(positional, (1, 2)) == [(3,)]
    finally:
        ours.close()
        theirs.close()


def test_a_type_it_does_not_read_is_left_to_psycopg(pg_url: str) -> None:
    ours, theirs = _pair(pg_url)
    try:
        with pytest.raises(libpq.Unsupported):
            ours.query("SELECT interval '1 day'")
        with pytest.raises(libpq.Unsupported):  # psycopg's zone: the session's (none here)
            ours.query("SELECT now()")
        with pytest.raises(libpq.Unsupported):  # psycopg raises its own error on it
            ours.query("SELECT 'infinity'::timestamp")
    finally:
        ours.close()
        theirs.close()
    reader = QuickReader.open(pg_url)
    assert reader is None, "an empty database is not at head"
    reader = QuickReader._connect(pg_url, None)
    assert reader is not None
    try:
        assert reader._fetch("SELECT interval '1 day', 'a'::text") == [(timedelta(days=1), "a")]
        assert reader._psycopg is not None, "that query ran on psycopg"
        assert reader._fetch("SELECT 2") == [(2,)]
    finally:
        reader.close()


def test_a_refused_connection_says_why_and_the_store_path_takes_over(pg_url: str) -> None:
    params = {**_params(pg_url), "dbname": "no_such_database"}
    with pytest.raises(libpq.LibpqError, match="no_such_database"):
        libpq.Connection(params)
    assert QuickReader.open(pg_url.replace(pg_url.rsplit("/", 1)[1].split("?")[0], "nope")) is None


def test_placeholders_become_libpq_parameters() -> None:
    sql, ordered = libpq.sql_and_params(
        "SELECT %(a)s, %(b)s, %(a)s, '5%%'", {"a": 1, "b": "x", "c": 3}
    )
    assert sql == "SELECT $1, $2, $1, '5%'" and ordered == [1, "x"]
    sql, ordered = libpq.sql_and_params("SELECT %s, %s", (1, 2))
    assert sql == "SELECT $1, $2" and ordered == [1, 2]


def test_without_libpq_to_load_the_reader_connects_with_psycopg(
    pg_url: str, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    Store.open(pg_url, clock=clock).close()  # a store at head

    def missing() -> Any:
        raise OSError("libpq not found")

    monkeypatch.setattr(libpq, "load", missing)
    reader = QuickReader.open(pg_url)
    assert reader is not None
    try:
        assert isinstance(reader.connection, psycopg.Connection)
        assert reader.recent_campaigns(5) == []
    finally:
        reader.close()
