"""Waiting for a condition, never for a fixed time (until the shared ``tests/eventually.py``
lands). The ``guard`` is a hang guard, not a timing claim: a test that needs it has failed;
timings are measured in ``tests/bench/``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

#: seconds after which a wait gives up: far beyond anything a passing test takes
GUARD = 180.0


def wait_until(
    condition: Callable[[], object], what: str, *, guard: float = GUARD, pause: float = 0.02
) -> None:
    """Block until ``condition()`` is true."""
    stop = time.monotonic() + guard
    while not condition():
        if time.monotonic() > stop:
            raise AssertionError(f"never happened: {what}")
        time.sleep(pause)


async def until(
    condition: Callable[[], object],
    what: str,
    *,
    step: Callable[[], Awaitable[object]] | None = None,
    guard: float = GUARD,
    pause: float = 0.01,
) -> None:
    """Await until ``condition()`` is true; ``step`` (ticking a test clock) runs between
    looks, else the loop turns for ``pause`` seconds."""
    stop = time.monotonic() + guard
    while not condition():
        if time.monotonic() > stop:
            raise AssertionError(f"never happened: {what}")
        if step is not None:
            await step()
        else:
            await asyncio.sleep(pause)
