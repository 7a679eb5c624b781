"""A child process of the engine ends when the process that started it is gone
(``engine.lifeline``): the portable watch of the parent, without the kernel's signal."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from engine.lifeline import die_with_parent, ended, gone, parent_gone
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


# an importing engine's row workers (plugins/formats/mailing.py) are the fork server's
# children: the script starts such a pool with the same initializer, busy with endless work
POOL = """
import multiprocessing, os, time
from concurrent.futures import ProcessPoolExecutor
from engine.lifeline import exit_with

context = multiprocessing.get_context("forkserver")
with ProcessPoolExecutor(
    2, mp_context=context, initializer=exit_with, initargs=(os.getpid(),)
) as pool:
    futures = [pool.submit(time.sleep, 600) for _ in range(4)]
    while len(pool._processes) < 2:
        time.sleep(0.01)
    print(*pool._processes, flush=True)
    time.sleep(600)
"""


def test_the_row_workers_of_a_killed_import_end_by_themselves() -> None:
    """kill -9 of the importing process: its pool's workers, whose parent is the fork server
    and who wait on a queue they themselves keep open, end within a second or so."""
    engine = subprocess.Popen(
        [sys.executable, "-c", POOL],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    assert engine.stdout is not None
    workers = [int(pid) for pid in engine.stdout.readline().split()]
    assert len(workers) == 2
    try:
        assert not any(ended(pid) for pid in workers)
        os.kill(engine.pid, signal.SIGKILL)
        engine.wait(timeout=60)
        eventually_sync(
            lambda: all(ended(pid) or zombie(pid) for pid in workers),
            what="the row workers ending with the importing process",
            timeout=60,
        )
    finally:
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        engine.stdout.close()


def zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


FORKSERVER = """
import logging, sys
logging.basicConfig(level=logging.WARNING, format="%(message)s")
from engine.lifeline import forkserver
print("ready" if forkserver() is not None else "in-process")
"""


def test_no_fork_server_under_a_temporary_folder_too_long_for_its_socket(tmp_path: Path) -> None:
    """The fork server's socket lives under TMPDIR; a path too long for a Unix socket keeps
    it from starting: the import then works in one process and the log says how to fix it."""
    long = tmp_path / ("t" * 60) / ("u" * 60)
    long.mkdir(parents=True)
    out = subprocess.run(
        [sys.executable, "-c", FORKSERVER],
        env={**os.environ, "TMPDIR": str(long)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "in-process"
    assert "AF_UNIX path too long" in out.stderr and "Set TMPDIR to a short folder" in out.stderr
    assert str(long) in out.stderr
    short = subprocess.run(
        [sys.executable, "-c", FORKSERVER], capture_output=True, text=True, timeout=120
    )
    assert (short.returncode, short.stdout.strip(), short.stderr) == (0, "ready", "")
