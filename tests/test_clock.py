"""Clocks: the test clock jumps forward; engine code never reads the wall clock itself."""

from __future__ import annotations

import ast
import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from engine.clock import RealClock, TestClock, local_today

ROOT = Path(__file__).resolve().parents[1]


async def test_sleepers_wake_in_time_order_as_time_advances(clock: TestClock) -> None:
    woke: list[tuple[str, datetime]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    start = clock.now()
    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in [("b", 120), ("a", 60), ("c", 3600)]]
    await clock.advance(90)
    assert woke == [("a", start + timedelta(seconds=60))]
    assert clock.now() == start + timedelta(seconds=90)
    await clock.advance(timedelta(hours=2))
    assert [n for n, _ in woke] == ["a", "b", "c"]
    assert woke[2][1] == start + timedelta(hours=1)
    await asyncio.gather(*tasks)


async def test_a_loop_sees_every_instant_it_would_see_in_real_life(clock: TestClock) -> None:
    seen: list[datetime] = []

    async def every_20_minutes() -> None:
        for _ in range(7):
            seen.append(clock.now())
            await clock.sleep(20 * 60)

    task = asyncio.create_task(every_20_minutes())
    await clock.advance(timedelta(days=1))  # a day of pacing, in milliseconds
    await task
    assert seen == [
        datetime(2026, 11, 23, 12, tzinfo=UTC) + timedelta(minutes=20 * k) for k in range(7)
    ]


async def test_time_never_goes_back(clock: TestClock) -> None:
    with pytest.raises(ValueError):
        await clock.advance(-1)


def test_local_today_uses_the_configured_zone() -> None:
    clock = TestClock(datetime(2026, 11, 23, 1, 30, tzinfo=UTC))  # 22:30 the day before in SP
    assert str(local_today(clock, ZoneInfo("America/Sao_Paulo"))) == "2026-11-22"
    assert str(local_today(clock, ZoneInfo("UTC"))) == "2026-11-23"


def test_real_clock_is_aware_utc() -> None:
    now = RealClock().now()
    assert now.tzinfo is UTC


FORBIDDEN = {
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("datetime", "today"),
    ("date", "today"),
    ("time", "time"),
}


def test_engine_code_never_reads_the_wall_clock_directly() -> None:
    offenders = []
    for package in ("engine", "channels", "plugins", "tui"):
        for path in (ROOT / package).rglob("*.py"):
            if path.name == "clock.py" and path.parent.name == "engine":
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name)
                    and (node.func.value.id, node.func.attr) in FORBIDDEN
                ):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == [], "use the injected clock (engine.clock) instead"
