"""Start-up benchmark (issue 16, goal 7): what the commands that open the store cost, each
in a fresh process, against ``python -c "import textual"`` and an empty interpreter in the
same run. Figures are CPU seconds (user + system, which a busy shared machine inflates far
less than wall time) and wall seconds, median of 5; the store is one of 1,000 campaigns and
100,000 then 1,000,000 deliveries (``bench_tui.build``, BENCH_ROWS scales the larger), so
that ``campaigns``, ``accounts`` and ``campaign show`` are seen flat or not; on SQLite, then
on PostgreSQL (a server started from the machine's binaries, as the tests' peer).

disparo's own modules are byte-compiled first, as ``pip``/``pipx install`` leaves them: with
PYTHONDONTWRITEBYTECODE set (this machine sets it) every run would otherwise compile some 40
modules from source again, ~0.1 s that no installed disparo pays.
"""

from __future__ import annotations

import compileall
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tests.bench.bench_tui import build
from tests.bench.conftest import rows
from tests.peers.postgres import PostgresServer

RUNS = 5


def _cost(args: list[str], cwd: Path) -> tuple[float, float]:
    """Median (CPU seconds, wall seconds) of RUNS runs of ``python args``."""
    cpu: list[float] = []
    wall: list[float] = []
    for _ in range(RUNS):
        before = os.times()
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, *args], cwd=cwd, check=True, capture_output=True,
            env={**os.environ, "COLUMNS": "120"},
        )  # fmt: skip
        wall.append(time.perf_counter() - started)
        after = os.times()
        cpu.append(
            after.children_user - before.children_user + after.children_system
            - before.children_system
        )  # fmt: skip
    return statistics.median(cpu), statistics.median(wall)


ROOT = Path(__file__).resolve().parents[2]


def bench_commands_that_open_the_store(tmp_path: Path) -> None:
    for package in ("engine", "channels", "plugins", "tui"):
        compileall.compile_dir(ROOT / package, quiet=1)
    empty = _cost(["-c", "pass"], tmp_path)
    textual = _cost(["-c", "import textual"], tmp_path)
    print(
        f"\nstart-up, CPU s / wall s, median of {RUNS} (a shared machine: CPU is the figure):\n"
        f"  python -c pass            {empty[0]:.3f} / {empty[1]:.3f}\n"
        f"  python -c 'import textual' {textual[0]:.3f} / {textual[1]:.3f} (reference)"
    )
    help_cost = _cost(["-m", "engine.cli", "--help"], tmp_path)
    print(
        f"  disparo --help            {help_cost[0]:.3f} / {help_cost[1]:.3f} "
        f"({help_cost[0] / textual[0]:.1f}× textual's CPU)"
    )
    for deliveries in (100_000, rows(1_000_000)):
        folder = tmp_path / f"d{deliveries}"
        folder.mkdir()
        store, _, took = build(folder, deliveries)
        store.close()
        _commands(folder, f"sqlite:///{folder}/bench.db", deliveries, took, textual[0])


def _commands(folder: Path, url: str, deliveries: int, took: float, textual: float) -> None:
    """The three commands on the store at ``url`` (built in ``folder`` by ``build``)."""
    config = folder / "disparo.toml"
    text = config.read_text()
    config.write_text(text.replace("[engine]", f'[engine]\ndatabase_url = "{url}"', 1))
    where = url.partition(":")[0].partition("+")[0]
    print(f"  {where} store of 1,000 campaigns, {deliveries:,} deliveries (built in {took:.0f} s):")
    for command in (["campaigns"], ["accounts"], ["campaign", "show", "1"]):
        cpu, wall = _cost(["-m", "engine.cli", "--config", str(config), *command], folder)
        print(
            f"    disparo {' '.join(command):<18} {cpu:.3f} / {wall:.3f} "
            f"({cpu / textual:.1f}× textual's CPU; goal ≤ 0.35 s)"
        )


def bench_commands_on_postgresql(postgres: PostgresServer, tmp_path: Path) -> None:
    """The same commands on PostgreSQL (a server from the machine's binaries): flat from
    100,000 to 1,000,000 deliveries too (the client's CPU; the server's is not counted)."""
    for package in ("engine", "channels", "plugins", "tui"):
        compileall.compile_dir(ROOT / package, quiet=1)
    textual = _cost(["-c", "import textual"], tmp_path)
    print(
        f"\nstart-up on PostgreSQL, CPU s / wall s, median of {RUNS}; "
        f"python -c 'import textual' {textual[0]:.3f} / {textual[1]:.3f}"
    )
    for deliveries in (100_000, rows(1_000_000)):
        folder = tmp_path / f"d{deliveries}"
        folder.mkdir()
        name = postgres.create_database()
        url = postgres.url(name)
        store, _, took = build(folder, deliveries, url)
        store.close()
        try:
            _commands(folder, url, deliveries, took, textual[0])
        finally:
            postgres.drop_database(name)
