"""Faults and hostile input at intake: long names, NUL bytes, symbolic links, stalled uploads,
orphan spool files, full disks and databases, odd encodings and compressed payloads.

In every scenario nothing is lost (the file is imported once, or stays for the next poll, or is
rejected with a report), nothing is written outside the source's folder, and the files after a
poison file are still taken. Run against the loopback peers where one applies: a local folder,
FTP and SFTP (``peer``), SQLite and PostgreSQL (``store``).
"""

from __future__ import annotations

import csv
import gzip
import io
import shutil
import subprocess
import zipfile
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
from engine.mailing_names import check_name
from engine.publish.results import write_results
from engine.store import Store
from engine.store import schema as t
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


def test_nul_in_a_cell_rejects_the_row_on_both_databases(
    store: Store, clock: TestClock, tmp_path: Path
) -> None:
    (tmp_path / "drop").mkdir()
    drop = tmp_path / "drop"
    config = make_config(tmp_path, {"kind": "local", "path": "drop"})
    c = collector(store, config, clock)
    poisoned = drop / name(1, "cBRAD")
    poisoned.write_bytes(
        b"nome;telefone;email;cpf\n"
        b"Ana;11998877665;ana@example.com;111\n"
        b"B\x00ia;11988887777;b@x.com;222\n"
        b"\x00=1+1;11977776666;c@x.com;333\n"
    )
    later = drop / name(2, "cBRAD")
    later.write_text(CSV.replace("111", "444").replace("222", "555"))
    summary = settle(c, clock)
    assert summary.ok, summary.error
    reports = {r.path: r for r in summary.reports}
    assert reports[poisoned.name].outcome == "imported"
    assert reports[poisoned.name].rejected_rows == {"nul-character": 2}
    assert reports[later.name].outcome == "imported"
    with store.read() as conn:
        names = sorted(conn.execute(sa.select(t.contacts.c.name)).scalars())
    assert names == ["Ana", "Ana", "Bia"]  # the later file's rows; nothing with a NUL
    text = (drop / "processed" / (poisoned.stem + ".rejeitados.csv")).read_text("utf-8-sig")
    assert "\x00" not in text and "nul-character" in text
    rows = list(csv.reader(io.StringIO(text), delimiter=";"))
    assert rows[2][5].startswith("'")  # a cell starting with NUL is neutralised (E2)


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


# -- 9. encodings, sizes and payloads ----------------------------------------------------------


def poison(
    store: Store, clock: TestClock, tmp_path: Path, data: bytes, filename: str | None = None
) -> tuple[PollSummary, Path]:
    """Drop ``data`` as a mailing, and a good file after it; poll until both are settled."""
    drop = tmp_path / "drop"
    drop.mkdir(exist_ok=True)
    config = make_config(tmp_path, {"kind": "local", "path": "drop"})
    c = collector(store, config, clock)
    bad = drop / (filename or name(1, "cBRAD"))
    bad.write_bytes(data)
    (drop / name(2, "cBRAD")).write_text(CSV)
    summary = settle(c, clock)
    assert summary.ok, summary.error
    outcomes = {r.path: r.outcome for r in summary.reports}
    assert outcomes.get(name(2, "cBRAD")) == "imported"  # never blocked by the poison
    assert count(store, t.contacts) == 2
    return summary, drop


def error_report(drop: Path, filename: str) -> str:
    return (drop / "rejected" / (filename.rsplit(".", 1)[0] + ".erro.txt")).read_text("utf-8")


@pytest.mark.parametrize(
    ("encoding", "named"),
    [("utf-16", "UTF-16"), ("utf-16-le", "UTF-16"), ("utf-16-be", "UTF-16"), ("utf-32", "UTF-32")],
)
def test_utf16_files_are_named_as_such(
    store: Store, clock: TestClock, tmp_path: Path, encoding: str, named: str
) -> None:
    summary, drop = poison(store, clock, tmp_path, CSV.encode(encoding))
    [problem] = next(r for r in summary.reports if r.path == name(1, "cBRAD")).problems
    assert problem.code == "encoding" and problem.rule == "N22"
    assert named in problem.message and named in problem.message_pt
    assert "UTF-8" in problem.message  # the fix
    assert named in error_report(drop, name(1, "cBRAD"))


def test_a_file_of_one_huge_line_says_so(store: Store, clock: TestClock, tmp_path: Path) -> None:
    from plugins.formats.mailing import MAX_LINE

    data = ("nome;telefone;" + "x" * (MAX_LINE + 10)).encode()
    summary, _ = poison(store, clock, tmp_path, data)
    [problem] = next(r for r in summary.reports if r.path == name(1, "cBRAD")).problems
    assert problem.code == "line-too-long" and problem.rule == "N22"
    assert f"{MAX_LINE:,}" in problem.message and "line break" in problem.message


def stored_zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("contatos.csv", CSV)
    return out.getvalue()


def xlsx() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (stored_zip(), "zip"),
        (gzip.compress(CSV.encode()), "gzip"),
        (xlsx(), "Excel"),
        (bytes.fromhex("d0cf11e0a1b11ae1") + b"\x00" * 600, "Excel"),
    ],
    ids=["stored-zip", "gzip", "xlsx", "xls"],
)
def test_a_compressed_or_binary_payload_is_refused_as_such(
    store: Store, clock: TestClock, tmp_path: Path, data: bytes, words: str
) -> None:
    summary, drop = poison(store, clock, tmp_path, data)
    [problem] = next(r for r in summary.reports if r.path == name(1, "cBRAD")).problems
    assert problem.code == "not-csv" and problem.rule == "N22"
    assert words in problem.message and words in problem.message_pt
    assert (drop / "rejected" / name(1, "cBRAD")).read_bytes() == data  # moved intact


def test_a_gz_name_is_told_to_decompress_not_to_rename() -> None:
    from datetime import date, datetime

    filename = name(1, "cBRAD") + ".gz"
    check = check_name(filename, today=date(2026, 11, 23), now=datetime(2026, 11, 23, 9))
    [problem] = [p for p in check.errors if p.code == "bad-extension"]
    assert ".csv.csv" not in problem.message
    assert "decompress" in problem.message and f"`{name(1, 'cBRAD')}`" in problem.message
    assert "descompacte" in problem.message_pt
