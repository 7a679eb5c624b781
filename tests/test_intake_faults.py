"""Faults and hostile input at intake: long names, NUL bytes, symbolic links, stalled uploads,
orphan spool files, full disks and databases, odd encodings and compressed payloads.

In every scenario nothing is lost (the file is imported once, or stays for the next poll, or is
rejected with a report), nothing is written outside the source's folder, and the files after a
poison file are still taken. Run against the loopback peers where one applies: a local folder,
FTP and SFTP (``peer``), SQLite and PostgreSQL (``store``).
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engine.clock import TestClock
from engine.config import Config
from engine.csvsafe import SafeWriter, safe_cell
from engine.intake.collector import Collector, PollSummary
from engine.publish.results import write_results
from engine.store import Store
from tests.helpers import TODAY, collector, load, name, write_config

CSV = "nome;telefone;email;cpf\nAna;11998877665;ana@example.com;111\nBia;11988887777;b@x.com;222\n"
WALLETS = {"BRAD": {"sms_template": "Oi {{ nome }}"}}


@pytest.fixture(autouse=True)
def _passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FTP_PASSWORD", "s3cret-ftp")
    monkeypatch.setenv("SFTP_PASSWORD", "s3cret-sftp")


@dataclass
class Peer:
    """A source on a loopback peer: its kind, the folder behind it, its config table."""

    kind: str
    root: Path
    table: dict[str, Any]


@pytest.fixture(params=["local", "ftp", "sftp"])
def peer(request: pytest.FixtureRequest, tmp_path: Path) -> Peer:
    if request.param == "local":
        root = tmp_path / "drop"
        root.mkdir()
        return Peer("local", root, {"kind": "local", "path": "drop"})
    if request.param == "ftp":
        ftp = request.getfixturevalue("ftp_server")
        return Peer(
            "ftp",
            ftp.root,
            {
                "kind": "ftp",
                "host": "127.0.0.1",
                "port": ftp.port,
                "user": ftp.user,
                "password_env": "FTP_PASSWORD",
                "allow_private": True,
            },
        )
    sftp = request.getfixturevalue("sftp_server")
    return Peer(
        "sftp",
        sftp.root,
        {
            "kind": "sftp",
            "host": "127.0.0.1",
            "port": sftp.port,
            "user": sftp.user,
            "password_env": "SFTP_PASSWORD",
            "host_key_fingerprint": sftp.fingerprint,
            "allow_private": True,
        },
    )


def make_config(tmp_path: Path, table: dict[str, Any], **extra: Any) -> Config:
    return load(write_config(tmp_path, sources={"src": table | extra}, wallets=WALLETS))


def poll(c: Collector, source: str = "src") -> PollSummary:
    return c.poll_blocking(c.config.sources[source])


def settle(c: Collector, clock: TestClock, source: str = "src") -> PollSummary:
    """Two listings further apart than the source's minimum age (F8): what is stable is taken."""
    poll(c, source)
    clock.jump(c.config.sources[source].options.get("min_age", timedelta(0)) + timedelta(seconds=1))
    return poll(c, source)


def count(store: Store, table: sa.Table) -> int:
    with store.read() as c:
        return int(c.execute(sa.select(sa.func.count()).select_from(table)).scalar() or 0)


def observed(store: Store) -> dict[str, Any]:
    return {o.path: o for o in store.files.observations()}


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def sized_name(seq: int, params: str, total: int) -> str:
    """A valid mailing name of exactly ``total`` UTF-8 bytes: a long ``_d`` description with
    two-byte letters in it, so a cut in the middle of a character would show."""
    head = f"mailing_{TODAY}_{seq:03d}_{params}_dRégua "
    room = total - len(head.encode()) - len(".csv")
    pad = "é" * (room // 2) + "x" * (room % 2)
    result = head + pad + ".csv"
    assert len(result.encode()) == total
    return result


# -- 5. NUL bytes in cells --------------------------------------------------------------------


def test_csv_exports_neutralise_control_characters() -> None:
    assert safe_cell("\x00=cmd|' /C calc'!A0").startswith("'")
    assert safe_cell("\x07bell").startswith("'")
    assert "\x00" not in safe_cell("a\x00b") and "\x1b" not in safe_cell("a\x1b[31mb")
    assert safe_cell("Olá\tmundo") == "Olá\tmundo"  # tabs inside a cell are quoted, kept
    out = io.StringIO()
    SafeWriter(out).writerow(["\x00x", "ok", "a\x01b\x7fc\x9bd", "linha\nnova", 7])
    text = out.getvalue()
    assert not any(ch in text for ch in "\x00\x01\x7f\x9b")
    assert list(csv.reader(io.StringIO(text), delimiter=";")) == [
        ["'\ufffdx", "ok", "a\ufffdb\ufffdc\ufffdd", "linha\nnova", "7"]
    ]


def test_results_export_never_carries_raw_control_characters(
    store: Store, clock: TestClock, tmp_path: Path
) -> None:
    (tmp_path / "drop").mkdir()
    config = make_config(tmp_path, {"kind": "local", "path": "drop"})
    c = collector(store, config, clock)
    (tmp_path / "drop" / name(1, "cBRAD_smslong")).write_text(
        "nome;telefone\n\x01Ana\x1b[2J;11998877665\n"
    )
    [report] = settle(c, clock).reports
    assert report.campaign_id is not None
    out = io.StringIO()
    write_results(store, report.campaign_id, out, config.tz)
    text = out.getvalue()
    assert "\x01" not in text and "\x1b" not in text
    assert "'\ufffdAna\ufffd[2J" in text


# -- 9. spool, disks and databases -------------------------------------------------------------


def _can_mount_tmpfs() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def test_sqlite_commits_are_durable_before_a_file_is_moved(
    tmp_path: Path, clock: TestClock
) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'x.db'}", clock=clock)
    try:
        with store.read() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    finally:
        store.close()
