"""What every group of queries shares: access to the store and its transactions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from sqlalchemy import Connection

if TYPE_CHECKING:
    from engine.store import Store


class Queries:
    """Base of a domain's queries. Methods take an optional ``conn`` to join the caller's
    transaction; without one they open their own."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @contextmanager
    def _writing(self, conn: Connection | None) -> Iterator[Connection]:
        if conn is not None:
            yield conn
        else:
            with self.store.write() as own:
                yield own

    @contextmanager
    def _reading(self, conn: Connection | None) -> Iterator[Connection]:
        if conn is not None:
            yield conn
        else:
            with self.store.read() as own:
                yield own
