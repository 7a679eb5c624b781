"""Start-up benchmark (issue 16, goal 7): what the commands that open the store cost, each
in a fresh process, against ``python -c "import textual"`` and an empty interpreter in the
same interleaved rounds (each case once per round, so a shared machine's load falls on all
alike). Figures are CPU seconds (user + system, which a busy shared machine inflates far
less than wall time) and wall seconds, median of 5; the stores are of 1,000 campaigns and
100,000 then 1,000,000 deliveries (``bench_tui.build``, BENCH_ROWS scales the larger), built
by a child process and closed before anything is measured, so that ``campaigns``,
``accounts`` and ``campaign show`` are seen flat or not; on SQLite, then on PostgreSQL (a
server started from the machine's binaries, as the tests' peer).

disparo's own modules are byte-compiled first, as ``pip``/``pipx install`` leaves them: with
PYTHONDONTWRITEBYTECODE set (this machine sets it) every run would otherwise compile some 40
modules from source again, ~0.1 s that no installed disparo pays.
"""

from __future__ import annotations

import compileall
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tests.bench.conftest import rows
from tests.peers.postgres import PostgresServer

RUNS = 5


ROOT = Path(__file__).resolve().parents[2]


#: the commands that open the store
COMMANDS = (["campaigns"], ["accounts"], ["campaign", "show", "1"])

BUILD = """
import sys
from pathlib import Path

from tests.bench.bench_tui import build

folder, deliveries, url = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
store, _, took = build(folder, deliveries, url)
store.close()
config = folder / "disparo.toml"
text = config.read_text()
config.write_text(text.replace("[engine]", f'[engine]\\ndatabase_url = "{url}"', 1))
print(took)
"""


def _build(folder: Path, deliveries: int, url: str) -> float:
    """Build the store in a child process, closed (its log checkpointed) when it exits, as a
    user's store is when a command opens it: the commands are measured from a process that
    did not itself just write 10⁶ rows (built in the bench's own process, the 1M figures read
    0.55–0.63 s where the same store measured 0.44–0.50 s from a fresh process)."""
    folder.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", BUILD, str(folder), str(deliveries), url],
        cwd=ROOT, check=True, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    os.sync()  # the build's writes are on disk before anything is measured
    return float(done.stdout.strip().splitlines()[-1])


def _paired(cases: dict[str, tuple[list[str], Path]]) -> dict[str, tuple[float, float]]:
    """Each case (python args, cwd) run once per round, RUNS rounds interleaved so that a
    shared machine's load falls on every case alike: median (CPU s, wall s) of each."""
    cpu: dict[str, list[float]] = {k: [] for k in cases}
    wall: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(RUNS):
        for key, (args, cwd) in cases.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, *args], cwd=cwd, check=True, capture_output=True,
                env={**os.environ, "COLUMNS": "120"},
            )  # fmt: skip
            wall[key].append(time.perf_counter() - started)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            # getrusage counts microseconds (os.times counted 10 ms clock ticks)
            cpu[key].append(
                after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
            )  # fmt: skip
    return {k: (statistics.median(cpu[k]), statistics.median(wall[k])) for k in cases}


def _commands(
    label: str, stores: dict[int, tuple[Path, float]], tmp_path: Path, *extra: str
) -> None:
    """The three commands on each store (deliveries -> (folder, seconds to build)), with
    ``import textual``, an empty interpreter and each ``extra`` import, in the same
    interleaved rounds."""
    cases: dict[str, tuple[list[str], Path]] = {
        "python -c pass": (["-c", "pass"], tmp_path),
        "python -c 'import textual'": (["-c", "import textual"], tmp_path),
        **{f"python -c 'import {name}'": (["-c", f"import {name}"], tmp_path) for name in extra},
    }
    for deliveries, (folder, _) in stores.items():
        for command in COMMANDS:
            key = f"{deliveries}:{' '.join(command)}"
            config = str(folder / "disparo.toml")
            cases[key] = (["-m", "engine.cli", "--config", config, *command], folder)
    found = _paired(cases)
    textual = found["python -c 'import textual'"][0]
    print(
        f"\nstart-up on {label}, CPU s / wall s, median of {RUNS} interleaved rounds "
        f"(load average {os.getloadavg()[0]:.1f}):"
    )
    for key in (
        "python -c pass",
        "python -c 'import textual'",
        *(f"python -c 'import {n}'" for n in extra),
    ):
        print(f"  {key:<27} {found[key][0]:.3f} / {found[key][1]:.3f}")
    for deliveries, (_, took) in stores.items():
        print(f"  1,000 campaigns, {deliveries:,} deliveries (built in {took:.0f} s):")
        for command in COMMANDS:
            cpu, wall = found[f"{deliveries}:{' '.join(command)}"]
            print(
                f"    disparo {' '.join(command):<18} {cpu:.3f} / {wall:.3f} "
                f"({cpu / textual:.1f}× textual's CPU; goal ≤ 0.35 s)"
            )


def _compile() -> None:
    for package in ("engine", "channels", "plugins", "tui"):
        compileall.compile_dir(ROOT / package, quiet=1)


def bench_commands_that_open_the_store(tmp_path: Path) -> None:
    _compile()
    found = _paired(
        {
            "pass": (["-c", "pass"], tmp_path),
            "textual": (["-c", "import textual"], tmp_path),
            "help": (["-m", "engine.cli", "--help"], tmp_path),
        }
    )
    print(
        f"\n  disparo --help {found['help'][0]:.3f} / {found['help'][1]:.3f} CPU s / wall s "
        f"({found['help'][0] / found['textual'][0]:.1f}× textual's CPU "
        f"{found['textual'][0]:.3f}; python -c pass {found['pass'][0]:.3f})"
    )
    stores: dict[int, tuple[Path, float]] = {}
    for deliveries in (100_000, rows(1_000_000)):
        folder = tmp_path / f"d{deliveries}"
        stores[deliveries] = (folder, _build(folder, deliveries, f"sqlite:///{folder}/bench.db"))
    _commands("SQLite", stores, tmp_path)


def bench_commands_on_postgresql(postgres: PostgresServer, tmp_path: Path) -> None:
    """The same commands on PostgreSQL (a server from the machine's binaries): flat from
    100,000 to 1,000,000 deliveries too (the client's CPU; the server's is not counted)."""
    _compile()
    stores: dict[int, tuple[Path, float]] = {}
    names = []
    try:
        for deliveries in (100_000, rows(1_000_000)):
            name = postgres.create_database()
            names.append(name)
            folder = tmp_path / f"d{deliveries}"
            stores[deliveries] = (folder, _build(folder, deliveries, postgres.url(name)))
        # psycopg's import, which these commands no longer pay (engine.libpq)
        _commands("PostgreSQL", stores, tmp_path, "psycopg")
    finally:
        for name in names:
            postgres.drop_database(name)
