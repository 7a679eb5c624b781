"""A read-only PostgreSQL connection through libpq itself (``ctypes``), for the commands that
only look at the store (issue 16, goal 7): ``import psycopg`` costs ~0.13–0.16 s of CPU, as
much as the rest of ``disparo campaigns`` together, because the package imports all of
itself (its adapters, pools, async machinery, ~60 modules); the few queries of
``engine.reads`` need none of that.

It is the libpq psycopg itself runs on: the copy ``psycopg_binary`` ships (its own
``psycopg_binary.libs``), else the system's ``libpq.so.5``; neither found, ``load`` raises
``OSError`` and ``engine.reads`` connects with psycopg as before. libpq makes the connection
(the same keywords — host, port, dbname, user, password, sslmode… —, the same ``PG*``
environment variables and TLS defaults), so only two things are done here: parameters are
sent as text (typed as psycopg types them), and each column's text is read back as psycopg
reads it, by type (integers, floats, numerics, booleans, text, dates, timestamps without time
zone — the store's — and JSON).
A column of any other type raises ``Unsupported`` before anything is returned, and the
caller runs that query through psycopg instead: an answer is psycopg's or identical to it
(``tests/test_libpq.py`` compares both on every compiled query).
"""

from __future__ import annotations

import ctypes
import os
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

#: PQstatus / PQresultStatus values
_CONNECTION_OK = 0
_PGRES_COMMAND_OK = 1
_PGRES_TUPLES_OK = 2

#: type oid -> how its text is read (psycopg's loaders, for the types the store uses)
_INT = (20, 21, 23, 26)  # int8, int2, int4, oid
_TEXT = (18, 19, 25, 1042, 1043)  # char, name, text, bpchar, varchar
_FLOAT = (700, 701)
_NUMERIC = 1700
_BOOL = 16
_DATE = 1082
_TIMESTAMP = 1114
_JSON = (114, 3802)

#: Python type -> the oid psycopg binds it with (str and None: unknown, the server infers)
_INT2, _INT4, _INT8, _FLOAT8, _BOOLOID = 21, 23, 20, 701, 16

#: how long connecting may take when neither the URL nor PGCONNECT_TIMEOUT says (psycopg's
#: default: libpq alone would wait as long as the system does)
CONNECT_TIMEOUT_S = "130"

#: ``%(name)s``, ``%s`` and ``%%`` in psycopg's query syntax
_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%s|%%")


class Unsupported(Exception):
    """A value this module does not read or bind as psycopg would: use psycopg."""


class LibpqError(Exception):
    """libpq refused the connection or the query (its own message)."""


def _candidates() -> list[str]:
    """Where libpq may be: psycopg_binary's own copy first (what psycopg uses when it is
    installed), then the system's."""
    import importlib.util

    found: list[str] = []
    spec = importlib.util.find_spec("psycopg_binary")  # found, not imported
    if spec is not None and spec.submodule_search_locations:
        package = Path(next(iter(spec.submodule_search_locations)))
        for folder in (package.parent / "psycopg_binary.libs", package / ".dylibs"):
            found.extend(str(p) for p in sorted(folder.glob("libpq*")))
    found += ["libpq.so.5", "libpq.5.dylib"]
    return found


_lib: Any = None


def load() -> Any:
    """libpq, loaded once; ``OSError`` when it cannot be found."""
    global _lib
    if _lib is not None:
        return _lib
    for name in _candidates():
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        _declare(lib)
        _lib = lib
        return lib
    raise OSError("libpq not found (neither psycopg_binary's copy nor libpq.so.5)")


def _declare(lib: Any) -> None:
    p, c, i = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
    strings = ctypes.POINTER(ctypes.c_char_p)
    for name, res, args in (
        ("PQconnectdbParams", p, [strings, strings, i]),
        ("PQstatus", i, [p]),
        ("PQerrorMessage", c, [p]),
        ("PQfinish", None, [p]),
        ("PQexec", p, [p, c]),
        ("PQexecParams", p, [p, c, i, ctypes.POINTER(ctypes.c_uint), strings, p, p, i]),
        ("PQresultStatus", i, [p]),
        ("PQresultErrorMessage", c, [p]),
        ("PQclear", None, [p]),
        ("PQntuples", i, [p]),
        ("PQnfields", i, [p]),
        ("PQftype", ctypes.c_uint, [p, i]),
        ("PQgetvalue", p, [p, i, i]),
        ("PQgetlength", i, [p, i, i]),
        ("PQgetisnull", i, [p, i, i]),
    ):
        function = getattr(lib, name)
        function.restype = res
        function.argtypes = args


def _strings(values: Sequence[bytes | None]) -> Any:
    return (ctypes.c_char_p * (len(values) + 1))(*values, None)


def _message(raw: bytes | None) -> str:
    return " ".join((raw or b"").decode("utf-8", "replace").split())


def _bind(value: Any) -> tuple[int, bytes | None]:
    """(oid, text) of a parameter, as psycopg binds it."""
    if value is None:
        return 0, None
    if isinstance(value, bool):
        return _BOOLOID, b"t" if value else b"f"
    if isinstance(value, int):
        oid = _INT2 if -(2**15) <= value < 2**15 else _INT4 if -(2**31) <= value < 2**31 else _INT8
        if not -(2**63) <= value < 2**63:
            raise Unsupported(f"integer {value} out of int8")
        return oid, str(value).encode()
    if isinstance(value, str):
        return 0, value.encode()
    if isinstance(value, float):
        return _FLOAT8, repr(value).encode()
    if isinstance(value, datetime) and value.tzinfo is None:
        return _TIMESTAMP, value.isoformat(sep=" ").encode()
    raise Unsupported(f"a parameter of type {type(value).__name__}")


def _reader(oid: int) -> Any:
    if oid in _INT:
        return int
    if oid in _TEXT:
        return str
    if oid == _BOOL:
        return lambda v: v == "t"
    if oid in _FLOAT:
        return float
    if oid == _NUMERIC:
        from decimal import Decimal

        return Decimal
    if oid == _TIMESTAMP:
        return datetime.fromisoformat
    if oid == _DATE:
        return date.fromisoformat
    if oid in _JSON:
        import json

        return json.loads
    raise Unsupported(f"a column of type oid {oid}")


def sql_and_params(sql: str, params: Mapping[str, Any] | Sequence[Any]) -> tuple[str, list[Any]]:
    """psycopg's ``%(name)s`` / ``%s`` query as libpq's ``$1``…, with its parameters in order
    (a name used twice is one parameter)."""
    ordered: list[Any] = []
    numbers: dict[str, int] = {}
    positional = iter(params) if not isinstance(params, Mapping) else None

    def replace(m: re.Match[str]) -> str:
        if m.group(0) == "%%":
            return "%"
        name = m.group(1)
        if name is None:
            if positional is None:
                raise Unsupported("%s with named parameters")
            ordered.append(next(positional))
            return f"${len(ordered)}"
        if not isinstance(params, Mapping):
            raise Unsupported("%(name)s with positional parameters")
        if name not in numbers:
            ordered.append(params[name])
            numbers[name] = len(ordered)
        return f"${numbers[name]}"

    return _PLACEHOLDER.sub(replace, sql), ordered


class Connection:
    """One libpq connection in autocommit (each statement its own transaction), read-only
    use: ``query`` returns all the rows as tuples."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        lib = load()
        self._lib = lib
        settings = {
            **{k: str(v) for k, v in params.items() if v is not None},
            "client_encoding": "UTF8",
        }
        if "connect_timeout" not in settings and not os.environ.get("PGCONNECT_TIMEOUT"):
            settings["connect_timeout"] = CONNECT_TIMEOUT_S  # psycopg's default, not forever
        keys = _strings([k.encode() for k in settings])
        values = _strings([v.encode() for v in settings.values()])
        self._conn = lib.PQconnectdbParams(keys, values, 0)
        if not self._conn:
            raise LibpqError("libpq could not allocate a connection")
        if lib.PQstatus(self._conn) != _CONNECTION_OK:
            message = _message(lib.PQerrorMessage(self._conn))
            self.close()
            raise LibpqError(message or "connection failed")
        # how psycopg reads dates does not depend on the session's DateStyle; ours does
        self._run(lib.PQexec(self._conn, b"SET DateStyle TO ISO"))

    def _run(self, result: Any) -> list[tuple[Any, ...]]:
        lib = self._lib
        if not result:
            raise LibpqError(_message(lib.PQerrorMessage(self._conn)) or "query failed")
        try:
            status = lib.PQresultStatus(result)
            if status == _PGRES_COMMAND_OK:
                return []
            if status != _PGRES_TUPLES_OK:
                raise LibpqError(_message(lib.PQresultErrorMessage(result)) or "query failed")
            fields = lib.PQnfields(result)
            readers = [_reader(lib.PQftype(result, j)) for j in range(fields)]
            rows = []
            getvalue, getlength, isnull = lib.PQgetvalue, lib.PQgetlength, lib.PQgetisnull
            for i in range(lib.PQntuples(result)):
                row: list[Any] = []
                for j, read in enumerate(readers):
                    if isnull(result, i, j):
                        row.append(None)
                        continue
                    raw = ctypes.string_at(getvalue(result, i, j), getlength(result, i, j))
                    try:
                        row.append(read(raw.decode("utf-8")))
                    except ValueError as exc:  # "infinity", a date BC…: psycopg's to say
                        raise Unsupported(f"{raw!r}: {exc}") from exc
                rows.append(tuple(row))
            return rows
        finally:
            lib.PQclear(result)

    def query(
        self, sql: str, params: Mapping[str, Any] | Sequence[Any] = ()
    ) -> list[tuple[Any, ...]]:
        """The rows of ``sql`` (psycopg's parameter syntax) with ``params``; ``Unsupported``
        when a parameter or a column is of a type not read here as psycopg would."""
        text, ordered = sql_and_params(sql, params)
        bound = [_bind(v) for v in ordered]
        oids = (ctypes.c_uint * max(1, len(bound)))(*(oid for oid, _ in bound))
        values = _strings([v for _, v in bound])
        result = self._lib.PQexecParams(
            self._conn, text.encode(), len(bound), oids, values, None, None, 0
        )
        return self._run(result)

    def close(self) -> None:
        """Close the connection (again: nothing)."""
        if self._conn:
            self._lib.PQfinish(self._conn)
            self._conn = None
