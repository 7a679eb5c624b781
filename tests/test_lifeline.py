"""A child process of the engine ends when the process that started it is gone
(``engine.lifeline``): the portable watch of the parent, without the kernel's signal."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from engine.lifeline import die_with_parent, gone, parent_gone
from engine.testing import eventually_sync

# the middle process starts the child and waits; the child only watches its parent (no
# prctl: as where the kernel sends no signal) and says what it saw
MIDDLE = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], str(__import__("os").getpid())])
print(child.pid, flush=True)
time.sleep(600)
"""
CHILD = """
import asyncio, os, sys
from engine.lifeline import gone, watch_parent
parent = int(sys.argv[1])
asyncio.run(watch_parent(parent, lambda: print(gone(parent), flush=True), interval=0.05))
"""


def test_a_child_whose_parent_is_killed_notices_and_says_why(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with out.open("w") as sink:
        middle = subprocess.Popen(
            [sys.executable, "-c", MIDDLE, CHILD],
            stdout=subprocess.PIPE,
            stderr=sink,
            text=True,
            cwd=Path(__file__).parent.parent,
        )
    assert middle.stdout is not None
    child = int(middle.stdout.readline())
    try:
        os.kill(middle.pid, signal.SIGKILL)
        # the child holds the pipe too: its end is the end of the output
        said, _ = middle.communicate(timeout=120)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
        raise
    assert gone(middle.pid) in said
    eventually_sync(
        lambda: (
            not Path(f"/proc/{child}").exists()
            or "Z" in Path(f"/proc/{child}/stat").read_text().rpartition(")")[2].split()[0]
        ),
        what="the child ending",
        timeout=60,
    )


def test_the_parent_looked_at_after_asking_for_the_signal() -> None:
    """The race at a child's start: its parent may die before the kernel was asked for the
    signal; ``die_with_parent`` says whether the expected parent is still there."""
    assert parent_gone(os.getpid())  # this process is not its own parent
    assert not parent_gone(os.getppid())
    assert not die_with_parent(os.getpid(), signal.SIGCONT)
    assert die_with_parent(os.getppid(), signal.SIGCONT)
    assert gone(42) == "the supervising process 42 is gone; stopping"
