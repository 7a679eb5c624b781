"""``disparo run --workers N``: the first process supervises N - 1 sender processes.

Each worker is ``disparo run --sender`` on the same configuration and store: an engine node
that only sends (the lease design lets several nodes share a store; each sender account is
sent by one node at a time, so the accounts are the unit of parallelism). The supervisor
forwards SIGTERM and SIGHUP to them (they run in their own session, so a Ctrl-C in the
terminal reaches them once, through it), stops them all when it stops, and starts again a
worker that dies, after a pause that doubles up to a minute, saying so in the log; a
worker that died ``restart_limit`` times within ``restart_window`` is not started again (a
worker that cannot run would otherwise be restarted forever): said in the log, in the run's
problems and, through ``on_give_up``, in ``disparo status``. With ``--until-idle`` the
workers end by themselves when nothing is left to send; one that fails is reported in the
run's problems. A worker ends by itself, as on SIGTERM, when the first process is gone (kill
-9 included: ``engine.lifeline``), so no engine goes on sending without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from engine.lifeline import Deaths

log = logging.getLogger("disparo.workers")

MAX_PAUSE = 60.0


class Workers:
    """The sender processes of one ``disparo run --workers``."""

    def __init__(
        self,
        config: Path | None,
        count: int,
        *,
        until_idle: bool,
        log_format: str,
        stop_timeout: float,
        restart_limit: int = 5,
        restart_window: float = 600.0,
        first_pause: float = 1.0,
        on_give_up: Callable[[int, str], None] | None = None,
    ) -> None:
        self.args = [sys.executable, "-m", "engine.cli"]
        if config is not None:
            self.args += ["--config", str(config)]
        self.args += ["run", "--sender", "--workers", str(count + 1), "--log-format", log_format]
        # each ends (cleanly, as on SIGTERM) when this process is gone, kill -9 included
        self.args += ["--supervisor", str(os.getpid())]
        if until_idle:
            self.args += ["--until-idle"]
        self.count = count
        self.until_idle = until_idle
        self.stop_timeout = stop_timeout
        self.restart_limit = restart_limit
        self.restart_window = restart_window
        self.first_pause = first_pause
        self.on_give_up = on_give_up
        #: the workers not started again (too many deaths in the window): slot -> why
        self.given_up: dict[int, str] = {}
        self.processes: dict[int, asyncio.subprocess.Process] = {}
        self.problems: list[str] = []
        self._stopping = False
        self._watchers: list[asyncio.Task[None]] = []
        self._finished = False

    async def start(self) -> None:
        """Start every worker, each watched (restarted when it dies)."""
        for slot in range(1, self.count + 1):
            await self._spawn(slot)
            self._watchers.append(asyncio.create_task(self._watch(slot), name=f"worker:{slot}"))

    async def _spawn(self, slot: int) -> None:
        process = await asyncio.create_subprocess_exec(*self.args, start_new_session=True)
        self.processes[slot] = process
        log.info(
            "sender worker %s started (pid %s)",
            slot,
            process.pid,
            extra={"event": "worker.started", "worker": slot, "pid": process.pid},
        )

    async def _watch(self, slot: int) -> None:
        pause = self.first_pause
        deaths = Deaths(self.restart_limit, self.restart_window)
        while True:
            process = self.processes[slot]
            code = await process.wait()
            if self._stopping or (self.until_idle and code == 0):
                return
            if self.until_idle and code == 1:  # it reported problems (and printed them)
                self.problems.append(f"sender worker {slot} ended with problems (exit status 1)")
                return
            why = f"signal {-code}" if code < 0 else f"exit status {code}"
            if deaths.died(time.monotonic()):
                self._give_up(slot, process.pid, why, len(deaths))
                return
            log.error(
                "sender worker %s (pid %s) died (%s); starting it again in %g s",
                slot,
                process.pid,
                why,
                pause,
                extra={"event": "worker.died", "worker": slot, "pid": process.pid},
            )
            self.problems.append(f"sender worker {slot} died ({why}) and was started again")
            await asyncio.sleep(pause)
            if self._stopping:
                return
            pause = min(pause * 2, MAX_PAUSE)
            await self._spawn(slot)

    def _give_up(self, slot: int, pid: int | None, why: str, deaths: int) -> None:
        seconds = self.restart_window
        window = f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"
        reason = (
            f"sender worker {slot} died {deaths} times within {window} (last: {why}) and is "
            "not started again (engine.worker_restarts); its accounts are sent by the other "
            "processes. Look for the cause in the log above, then restart disparo"
        )
        log.error(
            "%s",
            reason,
            extra={"event": "worker.given_up", "worker": slot, "pid": pid, "deaths": deaths},
        )
        self.given_up[slot] = reason
        self.problems.append(reason)
        if self.on_give_up is not None:
            self.on_give_up(slot, reason)

    def forward(self, sig: signal.Signals) -> None:
        """Pass a signal on to every worker (SIGTERM also stops restarting them)."""
        if sig == signal.SIGTERM:
            self._stopping = True
        for process in self.processes.values():
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(sig)

    async def finish(self) -> list[str]:
        """Wait for the workers: with ``--until-idle`` until they are done, else stop them
        (SIGTERM, then SIGKILL past the stop timeout); the problems seen. Once is enough:
        later calls return the same problems."""
        if self._finished:
            return self.problems
        self._finished = True
        if not self.until_idle:
            self.forward(signal.SIGTERM)
        waiting = [p.wait() for p in self.processes.values()]
        timeout = None if self.until_idle else self.stop_timeout + 10
        try:
            await asyncio.wait_for(asyncio.gather(*waiting), timeout)
        except TimeoutError:
            for slot, process in self.processes.items():
                if process.returncode is None:
                    log.error("sender worker %s (pid %s) did not stop: killed", slot, process.pid)
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
            await asyncio.gather(*(p.wait() for p in self.processes.values()))
        self._stopping = True
        for watcher in self._watchers:
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        return self.problems
