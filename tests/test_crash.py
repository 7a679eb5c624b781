"""kill -9 of a real ``disparo run`` during a large import leaves all or nothing (F10, F12), and
a restart imports the file exactly once and cleans what the killed run left in the spool."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.testing.eventually import GiveUp, eventually_sync
from tests.helpers import load, name, write_config

ROWS = 200_000


@pytest.fixture
def temporary() -> Iterator[Path]:
    """The engines' own temporary folder, where a big file's second process stages the tail.
    Short, not under pytest's tmp_path: multiprocessing's fork server puts its socket in it,
    and a path too long for a Unix socket (pytest-xdist's tmp_path is) would make the engine
    import in one process, and the test would not kill the two-process import it means to."""
    folder = Path(tempfile.mkdtemp(prefix="disparo-crash-", dir="/tmp"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def disparo(config: Path, temporary: Path) -> subprocess.Popen[bytes]:
    # the engine's log beside the config: a failure quotes its end
    with (config.parent / "engine.log").open("ab") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "engine.cli",
                "--config",
                str(config),
                "run",
                "--until-idle",
                "--settle",
                "0.1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env={**os.environ, "TMPDIR": str(temporary)},
        )


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[bytes]) -> None:
    """Wait for the moment to kill the engine (checked often: some moments are brief)."""

    def moment() -> bool:
        if condition():
            return True
        if process.poll() is not None:
            log = Path(str(process.args[4])).parent / "engine.log"
            raise GiveUp(
                f"the engine finished (exit code {process.returncode}) before the moment to kill "
                f"it ({condition.__name__}); its log ends: {log.read_text()[-3000:]}"
            )
        return False

    try:
        eventually_sync(
            moment,
            what=f"the moment to kill the engine ({condition.__name__})",
            timeout=60,  # a 200,000-row file: the import itself takes a while on a busy machine
            interval=0.005,
        )
    except AssertionError:
        process.kill()  # never leave an engine running after a failure
        process.wait()
        raise


def counts(db: Path) -> tuple[int, int, int, int]:
    with sqlite3.connect(db) as conn:
        return tuple(  # type: ignore[return-value]
            conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("contacts", "wallet_members", "mailings", "files")
        )


def test_kill_9_mid_import_leaves_all_or_nothing_and_a_restart_imports_once(
    tmp_path: Path, temporary: Path
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    config = write_config(tmp_path, sources={"drop": {"kind": "local", "path": "drop"}})
    today = datetime.now(UTC).astimezone(load(config).tz).strftime("%d%m%y")
    file = drop / name(1, "cBRAD", day=today)
    with file.open("w") as out:
        out.write("nome;telefone;email;cpf;cidade\n")
        for i in range(ROWS):
            out.write(f"Cliente {i};119{i:08d};c{i}@example.com;{i};Cidade {i % 50}\n")
    db = tmp_path / "disparo.db"
    spool = tmp_path / "spool" / "drop"
    wal = tmp_path / "disparo.db-wal"

    def staging() -> bool:  # downloaded to the spool: the import is reading it
        return spool.is_dir() and any(p.suffix == ".dat" for p in spool.iterdir())

    def committing() -> bool:  # the import's transaction is writing the database
        return wal.exists() and wal.stat().st_size > 8 << 20

    for moment in (staging, committing):
        # the test holds a read transaction (a real SQLite lock): the engine's commit does not
        # wait for it, but no checkpoint can copy the commit's log past it and empty the log,
        # so the moment (the commit's pages written to the log) lasts until the kill, however
        # busy the machine is: the kill lands in the commit or just after it (both checked)
        # (the first engine creates the database: nothing to hold before it)
        reader = sqlite3.connect(db if db.exists() else ":memory:", isolation_level=None)
        try:
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM sqlite_schema").fetchone()
            process = disparo(config, temporary)
            wait_for(moment, process)
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
        finally:
            reader.close()
        contacts, members, mailings, files = counts(db)
        assert (contacts, members, mailings, files) in ((0, 0, 0, 0), (ROWS, ROWS, 1, 1)), (
            moment.__name__,
            contacts,
            members,
            mailings,
            files,
        )
        if contacts:  # killed after the commit: the restart must not import it again
            break
        assert file.exists()  # nothing moved before the import committed

    finish = disparo(config, temporary)
    try:
        assert finish.wait(timeout=120) == 0
    finally:
        if finish.poll() is None:
            finish.kill()
            finish.wait()
    assert counts(db) == (ROWS, ROWS, 1, 1)
    assert (drop / "processed" / file.name).is_file() and not file.exists()
    # what the killed engines left in the spool (a download, its copy) was cleaned up
    assert not [p for p in spool.rglob("*") if p.is_file()]
    again = disparo(config, temporary)  # and never again
    assert again.wait(timeout=60) == 0
    assert counts(db) == (ROWS, ROWS, 1, 1)
    # a killed engine's second process (the file's tail, issue 16) removed its files itself
    eventually_sync(
        lambda: not list(temporary.glob("disparo-import-*")),
        what="the staged tail's files removed",
        timeout=60,
    )
    # the engines could start the file's second process (the socket of the fork server fit)
    assert "cannot start worker processes" not in (tmp_path / "engine.log").read_text()
