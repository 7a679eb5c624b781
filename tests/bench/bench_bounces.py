"""Bounce parsing benchmark: what the huge and pathological messages of tests/test_bounces.py
cost to parse on this machine, wall-clock and CPU time, and the rate in MB/s.

The tests only check that each stays far below a budget of CPU time (a parse gone
super-linear would take hours); these are the figures behind that margin.
"""

from __future__ import annotations

import time

from engine.feedback.bounces import parse_report
from tests.test_bounces import PATHOLOGICAL, huge_returned_message

REPEATS = 3


def _timed(raw: bytes) -> tuple[float, float]:
    """The best of REPEATS parses: (wall-clock seconds, CPU seconds)."""
    best = (float("inf"), float("inf"))
    for _ in range(REPEATS):
        wall, cpu = time.perf_counter(), time.thread_time()
        parse_report(raw)
        best = min(best, (time.perf_counter() - wall, time.thread_time() - cpu))
    return best


def bench_parse_huge_and_pathological_messages() -> None:
    _, huge = huge_returned_message()
    cases = [("DSN-with-a-20MB-attachment", huge)]
    cases += [(str(case.id), case.values[0]) for case in PATHOLOGICAL]
    print(f"\nBounce parsing, best of {REPEATS} (the tests allow 5 s of CPU time for each):")
    for name, raw in cases:
        wall, cpu = _timed(raw)
        rate = len(raw) / 1e6 / wall if wall else float("inf")
        print(
            f"  {name:<30} {len(raw) / 1e6:6.1f} MB  {wall * 1000:7.1f} ms wall  "
            f"{cpu * 1000:7.1f} ms CPU  {rate:8.0f} MB/s"
        )
