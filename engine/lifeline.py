"""A child process of the engine ends when the process that started it is gone, kill -9
included (the sender workers of ``run --workers``, the tracking endpoint's writer process).

On Linux the kernel sends the child a signal when its parent dies (``prctl`` with
``PR_SET_PDEATHSIG``, set at the child's start: ``die_with_parent``); everywhere, the child
also looks at its parent now and then (``watch_parent``: a child whose parent died is
adopted by another process, so ``os.getppid()`` changes). Either way the child stops as on
SIGTERM, saying why (``gone``).

The kernel's signal comes when the *thread* that started the child ends: the engine starts
its children from the event loop's thread, which lives as long as the process; when the
process is killed, that thread may end a moment before the others (``parent_gone`` sees it).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import functools
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.context import ForkServerContext

PR_SET_PDEATHSIG = 1

log = logging.getLogger(__name__)


def die_with_parent(parent: int, sig: signal.Signals = signal.SIGTERM) -> bool:
    """Ask the kernel for ``sig`` when the parent dies (Linux; nothing elsewhere), and
    whether ``parent`` is still this process's parent: it may have died before the request
    was in place (then no signal comes: the caller stops at once)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError, TypeError):
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    return os.getppid() == parent


def parent_gone(parent: int) -> bool:
    """Whether ``parent`` is no longer this process's parent (it died: another process
    adopted this one) or is ending: on Linux its first thread is already gone (a zombie)
    while its other threads end, and the kernel's signal comes then (the thread that started
    this one ended), before the adoption."""
    if os.getppid() != parent:
        return True
    try:
        with open(f"/proc/{parent}/stat", "rb") as stat:
            state = stat.read().rpartition(b")")[2].split()[0]
    except (OSError, IndexError):
        return False  # no /proc: the adoption says it
    return state in (b"Z", b"X")


def ended(pid: int) -> bool:
    """Whether the process ``pid`` (not this one's parent: e.g. the engine that started a
    pool's workers through multiprocessing's fork server) is gone or ending (a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # someone else's process has the number now: ours is gone, but be safe
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rpartition(b")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state in (b"Z", b"X")


def exit_with(pid: int, *, interval: float = 1.0) -> None:
    """End this process at once when the process ``pid`` is gone (a thread looks every
    ``interval`` seconds). For workers that hold nothing of their own (an import's row
    workers: the importing engine's transaction is all or nothing), whose parent is not the
    engine, so neither the kernel's signal nor ``watch_parent`` would tell."""

    def watch() -> None:
        while not ended(pid):
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="lifeline", daemon=True).start()


class Deaths:
    """A child process's deaths within a sliding window, to decide when to stop starting it
    again (the sender workers of ``run --workers``, the tracking writer process)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self.times: deque[float] = deque()

    def died(self, now: float) -> bool:
        """Record a death at ``now`` (monotonic seconds); whether ``limit`` of them fell
        within the last ``window`` seconds (then give up)."""
        self.times.append(now)
        while self.times and now - self.times[0] > self.window:
            self.times.popleft()
        return len(self.times) >= self.limit

    def __len__(self) -> int:
        return len(self.times)


def gone(parent: int) -> str:
    """What a child whose parent died says before stopping."""
    return f"the supervising process {parent} is gone; stopping"


async def watch_parent(parent: int, on_gone: Callable[[], None], *, interval: float = 1.0) -> None:
    """Call ``on_gone`` once, when ``parent`` is no longer this process's parent (looked at
    every ``interval`` seconds: where the kernel sends no signal, or it was lost)."""
    while not parent_gone(parent):  # noqa: ASYNC110 (a state of the system: no event to wait on)
        await asyncio.sleep(interval)
    on_gone()


@functools.cache
def forkserver() -> ForkServerContext | None:
    """multiprocessing's fork server, running, for the import's second process and row
    workers (not ``fork``: the engine has threads, and a forked child could inherit a held
    lock); ``None`` when it cannot start, and then the caller does the work in this process,
    only slower. The server listens on a Unix socket under ``TMPDIR``: a ``TMPDIR`` path too
    long for a socket (~100 characters), or one that cannot be written, stops it. Said once
    in the log, with the fix."""
    from multiprocessing import forkserver as server

    try:
        server.ensure_running()
    except OSError as exc:
        import tempfile

        log.warning(
            "cannot start worker processes (%s: multiprocessing's fork server puts its socket "
            "under the temporary folder %s, %d characters); big imports run in this one "
            "process, slower. Set TMPDIR to a short folder the engine can write, e.g. /tmp",
            exc.strerror or exc,
            tempfile.gettempdir(),
            len(tempfile.gettempdir()),
        )
        return None
    context = multiprocessing.get_context("forkserver")
    assert isinstance(context, ForkServerContext)
    return context
