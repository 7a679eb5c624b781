"""``eventually``: waits for a condition, returns what the check gave, and fails clearly."""

from __future__ import annotations

import asyncio
import threading

import pytest

from engine.testing.eventually import GiveUp, eventually, eventually_sync


async def test_returns_the_first_truthy_value_at_once() -> None:
    calls: list[int] = []

    def check() -> str:
        calls.append(1)
        return "ready"

    assert await eventually(check, what="a ready check") == "ready"
    assert calls == [1]  # no pause before the first check


async def test_waits_for_what_another_task_does() -> None:
    done = asyncio.Event()
    asyncio.get_running_loop().call_soon(done.set)
    assert await eventually(done.is_set, what="the event") is True


async def test_an_async_check_is_awaited() -> None:
    seen: list[int] = []

    async def check() -> list[int] | None:
        seen.append(len(seen))
        await asyncio.sleep(0)
        return seen if len(seen) == 3 else None

    assert await eventually(check, what="a third check") == [0, 1, 2]


async def test_exceptions_mean_not_yet_and_are_reported() -> None:
    attempts = iter([OSError("not listening"), None, 7])

    def check() -> int | None:
        step = next(attempts)
        if isinstance(step, Exception):
            raise step
        return step

    assert await eventually(check, what="a value") == 7
    with pytest.raises(AssertionError) as failed:
        await eventually(lambda: [][0], what="an element", timeout=0.02)
    assert "for an element" in str(failed.value)
    assert "raised IndexError: list index out of range" in str(failed.value)


async def test_the_failure_says_what_and_the_last_value() -> None:
    with pytest.raises(AssertionError, match=r"for 3 messages at the relay, .*gave \[\]"):
        await eventually(lambda: [], what="3 messages at the relay", timeout=0.02)


def test_the_failure_ends_with_the_detail_as_it_is_then() -> None:
    box = [1]
    with pytest.raises(AssertionError, match=r"gave False\nthe relay has 2 message\(s\)$"):
        eventually_sync(
            lambda: box.append(2) or len(box) > 100,
            what="a full box",
            timeout=0.02,
            detail=lambda: f"the relay has {len(box[:2])} message(s)",
        )


async def test_an_async_check_that_blocks_is_cut_at_the_timeout() -> None:
    async def check() -> bool:
        await asyncio.Event().wait()  # a stream that never sends anything
        return True

    with pytest.raises(AssertionError, match=r"for output, in vain .* still running"):
        await eventually(check, what="output", timeout=0.02)


async def test_give_up_stops_waiting_at_once() -> None:
    calls: list[int] = []

    def check() -> bool:
        calls.append(1)
        raise GiveUp("the process exited")

    with pytest.raises(GiveUp, match="the process exited"):
        await eventually(check, what="a moment that cannot come")
    assert calls == [1]


def test_the_sync_form_waits_for_a_thread() -> None:
    done = threading.Event()
    worker = threading.Timer(0.01, done.set)
    worker.start()
    try:
        assert eventually_sync(done.is_set, what="the thread") is True
    finally:
        worker.join()
    with pytest.raises(AssertionError, match=r"for nothing, in vain .* gave 0"):
        eventually_sync(lambda: 0, what="nothing", timeout=0.02)
    with pytest.raises(GiveUp):
        eventually_sync(lambda: (_ for _ in ()).throw(GiveUp("gone")), what="x")


def test_the_sync_form_refuses_an_async_check() -> None:
    async def check() -> bool:
        return True

    with pytest.raises(TypeError, match="await eventually"):
        eventually_sync(check, what="an async check")
