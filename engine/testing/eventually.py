"""Wait for a condition, never for a while: ``eventually`` polls a check until it holds.

A test that sleeps "long enough" for something to happen is slow on a quiet machine and
flaky on a busy one. Ask instead for the condition itself::

    await eventually(lambda: len(server.messages) >= 3, what="three messages at the relay")
    eventually_sync(lambda: not alive(pid), what=f"process {pid} to end")  # threads, processes

The check is called at once, then again after short pauses that grow from a millisecond up
to ``interval`` (50 ms by default). It may be a plain callable or return an awaitable (an
``async def``): ``eventually`` awaits it. The first truthy value is returned. An exception
raised by the check counts as "not yet" (a file being written, a port not listening yet) and
is reported if the wait fails; raise ``GiveUp`` to stop waiting at once (the process under
test exited, a stream ended). After ``timeout`` seconds (``TIMEOUT``: 30 s) the wait fails
with an ``AssertionError`` that says what it was waiting for and what the check last gave,
followed by ``detail()`` when given (the state worth seeing at that moment).
The timeout is a safety net for a condition that never comes, not a measurement: it is
generous because CI runs on a busy 2-core machine, and a passing test never waits for it.

Standard library only.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

__all__ = ["INTERVAL", "TIMEOUT", "GiveUp", "eventually", "eventually_sync"]

T = TypeVar("T")

#: how long to wait for a condition before failing: a safety net, never a measurement
TIMEOUT = 30.0
#: the longest pause between two checks (the pauses start at ``_FIRST_PAUSE`` and double)
INTERVAL = 0.05
_FIRST_PAUSE = 0.001
_SHOWN = 1000  # characters of the last value shown in a failure


class GiveUp(AssertionError):
    """Raised by a check to stop waiting at once: the condition can no longer come."""


class _StillRunning(Exception):
    """An async check was cut off by the deadline."""


def _failure(
    what: str,
    timeout: float,
    checks: int,
    last: object,
    error: BaseException | None,
    detail: Callable[[], object] | None,
) -> str:
    if isinstance(error, _StillRunning):
        seen = "the last check was still running"
    elif error is not None:
        seen = f"the last check raised {type(error).__name__}: {error}"
    else:
        shown = repr(last)
        if len(shown) > _SHOWN:
            shown = shown[:_SHOWN] + "…"
        seen = f"the last check gave {shown}"
    failure = f"waited {timeout:g} s for {what}, in vain ({checks} checks); {seen}"
    if detail is not None:
        failure += f"\n{detail()}"
    return failure


def _gave_up(
    what: str,
    timeout: float,
    checks: int,
    last: object,
    error: Exception | None,
    detail: Callable[[], object] | None,
) -> AssertionError:
    failed = AssertionError(_failure(what, timeout, checks, last, error, detail))
    failed.__cause__ = None if isinstance(error, _StillRunning) else error
    return failed


@overload
async def eventually(
    check: Callable[[], Awaitable[T]],
    *,
    what: str,
    timeout: float = TIMEOUT,  # noqa: ASYNC109 - a safety net on polling, not a cancel scope
    interval: float = INTERVAL,
    detail: Callable[[], object] | None = None,
) -> T: ...


@overload
async def eventually(
    check: Callable[[], T],
    *,
    what: str,
    timeout: float = TIMEOUT,  # noqa: ASYNC109
    interval: float = INTERVAL,
    detail: Callable[[], object] | None = None,
) -> T: ...


async def eventually(
    check: Callable[[], object],
    *,
    what: str,
    timeout: float = TIMEOUT,  # noqa: ASYNC109
    interval: float = INTERVAL,
    detail: Callable[[], object] | None = None,
) -> object:
    """Await until ``check()`` (a callable, or one returning an awaitable) gives a truthy
    value, and return that value; fail with an AssertionError naming ``what`` after
    ``timeout`` seconds (followed by ``detail()``, when given: the state worth seeing then).
    The event loop runs between checks, and an async check that blocks (reading a stream)
    is cut off at the timeout too."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pause = _FIRST_PAUSE
    checks = 0
    last: object = None
    error: Exception | None = None
    while True:
        checks += 1
        try:
            value = await _within(check, deadline)
        except GiveUp:
            raise
        except Exception as exc:
            last, error = None, exc
        else:
            if value:
                return value
            last, error = value, None
        left = deadline - loop.time()
        if left <= 0:
            raise _gave_up(what, timeout, checks, last, error, detail)
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 2, interval)


async def _within(check: Callable[[], object], deadline: float) -> object:
    """One check; an awaitable it returns is awaited until ``deadline`` (the loop's time)."""
    value = check()
    if not inspect.isawaitable(value):
        return value
    cut = asyncio.timeout_at(deadline)
    try:
        async with cut:
            return await value
    except TimeoutError:
        if cut.expired():
            raise _StillRunning from None
        raise


def eventually_sync(
    check: Callable[[], T],
    *,
    what: str,
    timeout: float = TIMEOUT,
    interval: float = INTERVAL,
    detail: Callable[[], object] | None = None,
) -> T:
    """``eventually`` for code without an event loop (threads, subprocesses): call
    ``check()`` until it gives a truthy value, sleeping between calls, and return it."""
    deadline = time.monotonic() + timeout
    pause = _FIRST_PAUSE
    checks = 0
    last: object = None
    error: Exception | None = None
    while True:
        checks += 1
        try:
            value = check()
        except GiveUp:
            raise
        except Exception as exc:
            last, error = None, exc
        else:
            if inspect.isawaitable(value):
                if inspect.iscoroutine(value):
                    value.close()  # never awaited, on purpose: no warning about it
                raise TypeError("eventually_sync() got an async check: await eventually()")
            if value:
                return value
            last, error = value, None
        left = deadline - time.monotonic()
        if left <= 0:
            raise _gave_up(what, timeout, checks, last, error, detail)
        time.sleep(min(pause, left))
        pause = min(pause * 2, interval)
