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
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

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


# -- 4. names of 236-255 bytes ----------------------------------------------------------------


def test_long_names_get_reports_that_fit_and_never_block_a_source(
    store: Store, clock: TestClock, tmp_path: Path, peer: Peer
) -> None:
    config = make_config(tmp_path, peer.table)
    c = collector(store, config, clock)
    refused = sized_name(1, "cBRAD_zz", 250)  # rejected by its name: `.erro.txt` (N+5 bytes)
    partly = sized_name(2, "cBRAD_smslong_h", 250)  # imported with a rejected row (N+11 bytes)
    twin = sized_name(4, "cBRAD", 254)  # its name in processed/ is taken: a numbered twin
    later = name(3, "cBRAD")
    (peer.root / refused).write_text(CSV)
    (peer.root / partly).write_text("nome;telefone\nAna;11998877665\nFixo;1133334444\n")
    (peer.root / twin).write_text(CSV.replace("Ana", "Ada").replace("111", "333"))
    (peer.root / later).write_text(CSV.replace("111", "444").replace("222", "555"))
    (peer.root / "processed").mkdir()
    (peer.root / "processed" / twin).write_text("older")

    summary = settle(c, clock)
    assert summary.ok, summary.error
    outcomes = {r.path: r.outcome for r in summary.reports}
    assert outcomes == {partly: "imported", twin: "imported", later: "imported"}
    assert summary.rejected_names == [refused]

    names = files_under(peer.root)
    assert all(len(n.rsplit("/", 1)[-1].encode()) <= 255 for n in names)
    assert not [n for n in names if n.endswith(".part")]
    # the rejected file, and a report named after it that fits, saying the whole name
    assert f"rejected/{refused}" in names
    [report] = [n for n in names if n.endswith(".erro.txt")]
    assert report.startswith("rejected/" + refused[:120]) and report.endswith(".erro.txt")
    text = (peer.root / report).read_text(encoding="utf-8")
    assert f"Arquivo: {refused}" in text and "[N7] unknown-parameter" in text
    # the imported file keeps its rejected rows report
    assert f"processed/{partly}" in names
    [rows] = [n for n in names if n.endswith(".rejeitados.csv")]
    assert rows.startswith("processed/" + partly[:120])
    assert "1133334444" in (peer.root / rows).read_text(encoding="utf-8-sig")
    # the taken name kept its content; the twin's name fits
    assert (peer.root / "processed" / twin).read_text() == "older"
    [twin_copy] = [
        n for n in names if n.startswith("processed/" + twin[:120]) and n != f"processed/{twin}"
    ]
    assert (peer.root / twin_copy).read_text().startswith("nome;telefone")
    # a poison file never grows the ledger by a row per poll
    ledger = count(store, t.files)
    for _ in range(3):
        assert poll(c).ok
    assert count(store, t.files) == ledger == 4


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
        ["'\ufffdx", "ok", "a\ufffdb\ufffdc\ufffdd", "linha nova", "7"]
    ]


@pytest.mark.parametrize(
    ("cell", "shown"),
    [
        ("linha\nnova", "linha nova"),
        ("linha\r\nnova", "linha nova"),
        ("linha\rnova", "linha nova"),
        ("a\x0bb\x0cc\x85d\u2028e\u2029f", "a b c d e f"),
        ("\nssh-ed25519 AAAA", "' ssh-ed25519 AAAA"),
        ("\rx", "' x"),
        ("\x00x", "'\ufffdx"),
        ("Olá\tmundo", "Olá\tmundo"),
    ],
)
def test_a_cell_is_always_one_line(cell: str, shown: str) -> None:
    """E2: line breaks inside a cell become a space (one line per row, always); a cell that
    started with one, or with any control character, is prefixed with ``'``."""
    assert safe_cell(cell) == shown
    out = io.StringIO()
    SafeWriter(out).writerow(["a", cell, "b"])
    assert out.getvalue().count("\n") == 1 and out.getvalue().endswith("\r\n")


def test_an_injected_line_never_starts_a_line_of_an_export(
    store: Store, clock: TestClock, tmp_path: Path
) -> None:
    """E2 (issue 12, scenario 2): a contact name carrying a newline and an SSH public key,
    imported without ``_h``, never starts a line in the results file: one line per
    recipient, no line starting with the injected text."""
    (tmp_path / "drop").mkdir()
    config = make_config(tmp_path, {"kind": "local", "path": "drop"})
    c = collector(store, config, clock)
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl x@y"
    (tmp_path / "drop" / name(1, "cBRAD_smslong")).write_text(
        f'nome;telefone\n"Ana\n{key}\n";11998877665\n"Bia\r\n{key}";11988887777\nCaio;11977776666\n'
    )
    [report] = settle(c, clock).reports
    assert report.campaign_id is not None
    with store.read() as conn:
        names = {r[0] for r in conn.execute(sa.select(t.contacts.c.name))}
    assert f"Ana\n{key}" in names  # stored as imported: only what is written is neutralised
    out = io.StringIO()
    assert write_results(store, report.campaign_id, out, config.tz) == 3
    lines = out.getvalue().split("\r\n")
    assert lines[-1] == "" and len(lines[:-1]) == 1 + 3  # the header, one line per recipient
    assert "\n" not in out.getvalue().replace("\r\n", "")
    assert not any(line.lstrip("\ufeff\"'").startswith("ssh-") for line in lines)


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


# -- 6. symbolic links ------------------------------------------------------------------------


@pytest.mark.parametrize("linked", ["rejected", "processed"])
def test_a_symlinked_folder_is_never_followed(
    store: Store, clock: TestClock, tmp_path: Path, peer: Peer, linked: str
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (peer.root / linked).symlink_to(elsewhere, target_is_directory=True)
    config = make_config(tmp_path, peer.table)
    c = collector(store, config, clock)
    bad = name(1, "cBRAD_zz")  # rejected by its name
    good = name(2, "cBRAD")
    (peer.root / bad).write_text(CSV)
    (peer.root / good).write_text(CSV)
    settle(c, clock)
    for _ in range(2):
        summary = poll(c)
    assert list(elsewhere.iterdir()) == []  # nothing written outside the source's folder
    assert summary.ok, summary.error
    stuck = bad if linked == "rejected" else good
    taken = good if linked == "rejected" else bad
    assert (peer.root / stuck).is_file()  # not moved: it waits, nothing lost
    seen = observed(store)[stuck]
    assert seen.status == "error" and "link" in (seen.message or "")
    assert not (peer.root / taken).exists()  # the other file went on
    ledger = count(store, t.files)
    assert ledger == 2 and count(store, t.mailings) == 1
    # the operator removes the link: the file is moved, never imported twice
    (peer.root / linked).unlink()
    poll(c)
    assert (peer.root / linked / stuck).is_file() and not (peer.root / stuck).exists()
    assert count(store, t.files) == ledger and count(store, t.mailings) == 1


def test_symlinked_entries_are_reported_not_skipped(
    store: Store, clock: TestClock, tmp_path: Path, peer: Peer, run_cli: Any
) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text(CSV)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / name(3, "")).write_text(CSV)
    link = name(1, "cBRAD")
    (peer.root / link).symlink_to(secret)
    (peer.root / "BRAD").symlink_to(outside, target_is_directory=True)
    good = name(2, "cBRAD")
    (peer.root / good).write_text(CSV.replace("111", "444").replace("222", "555"))
    config = make_config(tmp_path, peer.table)
    c = collector(store, config, clock)
    summary = settle(c, clock)
    assert summary.ok, summary.error
    assert [(r.path, r.outcome) for r in summary.reports] == [(good, "imported")]
    seen = observed(store)
    # a wallet folder linked elsewhere: reported, its files never taken
    assert seen["BRAD"].status == "refused"
    if peer.kind == "ftp":
        # pyftpdlib's MLSD shows a link as its target, and refuses to serve what is outside
        assert "cannot be read" in (seen["BRAD"].message or "")
        assert seen[link].status == "error" and "outside" in (seen[link].message or "")
    else:  # the local folder and SFTP (LSTAT) see links as links
        assert {seen[p].status for p in (link, "BRAD")} == {"refused"}
        assert "symbolic link" in (seen[link].message or "")
    assert (peer.root / link).is_symlink() and secret.read_text() == CSV
    assert count(store, t.files) == 1 and count(store, t.contacts) == 2
    assert sorted(os.listdir(outside)) == [name(3, "")]
    if peer.kind == "local" and store.dialect == "sqlite":  # `disparo sources`: same database
        shown = run_cli("--config", str(tmp_path / "disparo.toml"), "sources")
        assert "refused" in shown.output and "symbolic link" in shown.output
        # the run summary counts them and says where the reason is
        ran = run_cli("--config", str(tmp_path / "disparo.toml"), "run", "--until-idle")
        assert f"source src: {link} refused (a link" in " ".join(ran.output.split())


# -- 7. stalled uploads -----------------------------------------------------------------------


def test_a_stalled_upload_is_not_imported_truncated(
    store: Store, clock: TestClock, tmp_path: Path, peer: Peer
) -> None:
    config = make_config(tmp_path, peer.table)
    min_age = config.sources["src"].options["min_age"]
    assert min_age == timedelta(seconds=10 if peer.kind == "local" else 30)
    c = collector(store, config, clock)
    rows = "".join(f"P{i};119{i:08d};{i}\n" for i in range(200))
    file = peer.root / name(1, "cBRAD")
    file.write_text("nome;telefone;cpf\n" + rows[: len(rows) // 2])
    poll(c)
    clock.jump(timedelta(seconds=3))  # the writer paused longer than the poll interval
    stalled = poll(c)
    assert stalled.unstable == [file.name] and stalled.reports == []
    assert count(store, t.contacts) == 0
    file.write_text("nome;telefone;cpf\n" + rows)  # the upload goes on and ends
    poll(c)
    clock.jump(min_age - timedelta(seconds=1))
    assert poll(c).reports == []  # unchanged, but not for long enough yet
    clock.jump(timedelta(seconds=2))
    [report] = poll(c).reports
    assert report.outcome == "imported" and report.rows == 200
    assert count(store, t.contacts) == 200


def test_min_age_is_configurable_per_source(store: Store, clock: TestClock, tmp_path: Path) -> None:
    (tmp_path / "drop").mkdir()
    config = make_config(tmp_path, {"kind": "local", "path": "drop"}, min_age="2m")
    assert config.sources["src"].options["min_age"] == timedelta(minutes=2)
    c = collector(store, config, clock)
    (tmp_path / "drop" / name(1, "cBRAD")).write_text(CSV)
    poll(c)
    clock.jump(timedelta(seconds=90))
    assert poll(c).reports == []
    clock.jump(timedelta(seconds=31))
    assert [r.outcome for r in poll(c).reports] == ["imported"]


def test_a_size_changed_during_download_is_retried_not_imported(
    store: Store, clock: TestClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from plugins.sources.local import LocalSource

    drop = tmp_path / "drop"
    drop.mkdir()
    config = make_config(tmp_path, {"kind": "local", "path": "drop"})
    c = collector(store, config, clock)
    file = drop / name(1, "cBRAD")
    file.write_text(CSV)
    poll(c)
    clock.jump(timedelta(seconds=11))
    real = LocalSource.download

    def growing(self: LocalSource, path: str, dest: Any) -> int:
        with (drop / path).open("a") as more:  # the writer resumes as the download starts
            more.write("Caio;11977776666;c@x.com;333\n")
        return real(self, path, dest)

    monkeypatch.setattr(LocalSource, "download", growing)
    summary = poll(c)
    assert summary.unstable == [file.name] and summary.reports == []
    assert count(store, t.files) == 0 and count(store, t.contacts) == 0
    monkeypatch.setattr(LocalSource, "download", real)
    summary = settle(c, clock)
    assert [r.rows for r in summary.reports] == [3]


# -- 9. spool, disks and databases -------------------------------------------------------------


def test_orphan_spool_files_are_cleaned_at_start(
    store: Store, clock: TestClock, tmp_path: Path
) -> None:
    (tmp_path / "drop").mkdir()
    config = make_config(tmp_path, {"kind": "local", "path": "drop"})
    spool = tmp_path / "spool" / "src"
    spool.mkdir(parents=True)
    orphans = [
        spool / ".0123456789abcdef0123456789abcdef.part",  # a download killed half way
        spool / "0123456789abcdef-01234567.dat",  # a download killed before its import
        spool / "0123456789abcdef-01234567.dat.rejeitados.csv",
        spool / ".fedcba9876543210fedcba9876543210.erro.txt",
    ]
    for orphan in orphans:
        orphan.write_text("left by kill -9")
    publishing = spool / ".publish-0123456789abcdef"  # the publishing service's, in use
    publishing.write_text("being uploaded")
    poll(collector(store, config, clock))
    assert [p for p in spool.rglob("*") if p.is_file()] == [publishing]


def test_a_full_database_is_one_clear_line_and_the_file_waits(
    tmp_path: Path, clock: TestClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'disparo.db'}", clock=clock)
    try:
        drop = tmp_path / "drop"
        drop.mkdir()
        config = make_config(tmp_path, {"kind": "local", "path": "drop"})
        c = collector(store, config, clock)
        file = drop / name(1, "cBRAD")
        file.write_text(
            "nome;telefone;cpf\n" + "".join(f"P{i};119{i:08d};{i}\n" for i in range(20_000))
        )
        poll(c)
        clock.jump(timedelta(seconds=11))
        with store.read() as conn:
            pages = int(conn.exec_driver_sql("PRAGMA page_count").scalar() or 0)

        def cap(dbapi: Any, record: Any) -> None:
            dbapi.execute(f"PRAGMA max_page_count={pages + 8}")

        event.listen(store.engine, "connect", cap)
        store.engine.dispose()
        with caplog.at_level(logging.INFO):
            summary = poll(c)
        assert not summary.ok and summary.error is not None
        assert "database" in summary.error and "full" in summary.error
        assert "\n" not in summary.error
        assert not [r for r in caplog.records if r.exc_info], "no traceback for a full database"
        event.remove(store.engine, "connect", cap)
        store.engine.dispose()
        assert file.exists() and count(store, t.files) == 0 and count(store, t.contacts) == 0
        [report] = poll(c).reports  # the next poll, with room again
        assert report.outcome == "imported" and count(store, t.contacts) == 20_000
    finally:
        store.close()


def _can_mount_tmpfs() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs user and mount namespaces (unshare)")
def test_a_full_spool_disk_is_one_clear_line_and_the_file_waits(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    drop = tmp_path / "drop"
    drop.mkdir()
    config = write_config(
        tmp_path, sources={"drop": {"kind": "local", "path": "drop", "min_age": "1s"}}
    )
    today = datetime.now(UTC).astimezone(load(config).tz).strftime("%d%m%y")
    file = drop / name(1, "cBRAD", day=today)
    file.write_text(
        "nome;telefone;cpf\n" + "".join(f"P{i};119{i:08d};{i}\n" for i in range(30_000))
    )
    spool = tmp_path / "spool"
    spool.mkdir()
    command = [sys.executable, "-m", "engine.cli", "--config", str(config)]
    run = [*command, "run", "--until-idle", "--settle", "0.5"]
    # a 256 KiB spool in a private mount namespace: a real ENOSPC, nothing mocked
    small = subprocess.run(
        [
            "unshare",
            "-rm",
            "sh",
            "-c",
            f'mount -t tmpfs -o size=256k tmpfs "{spool}" && exec "$@"',
            "sh",
            *run,
        ],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ | {"COLUMNS": "200"},
    )
    output = small.stdout + small.stderr
    assert "Traceback" not in output, output
    assert "spool" in output and "full" in output, output
    assert file.exists()
    roomy = subprocess.run(run, capture_output=True, text=True, check=False)
    assert roomy.returncode == 0, roomy.stdout + roomy.stderr
    assert (drop / "processed" / file.name).is_file()


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


def test_poison_files_never_grow_the_ledger(store: Store, clock: TestClock, tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    config = make_config(tmp_path, {"kind": "local", "path": "drop"})
    c = collector(store, config, clock)
    (drop / "rejected").write_text("a file where the folder should be")  # reports cannot go
    bad = name(1, "cBRAD_zz")
    (drop / bad).write_text(CSV)
    (drop / name(2, "cBRAD")).write_text(CSV)
    summary = settle(c, clock)
    assert summary.ok and [r.outcome for r in summary.reports] == ["imported"]
    for _ in range(4):
        assert poll(c).ok
    assert count(store, t.files) == 2  # one rejection, kept; one import
    seen = observed(store)[bad]
    assert seen.status == "error" and "rejected" in (seen.message or "")
    assert (drop / bad).is_file()  # it waits for the folder to be fixed, nothing lost


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs user and mount namespaces (unshare)")
def test_disparo_import_into_a_full_database_is_one_line(tmp_path: Path) -> None:
    """`disparo import` says a full database in one line, imports nothing, and the same
    command works once there is room (the collector's case is above)."""
    folder = tmp_path / "db"
    folder.mkdir()
    config = write_config(
        tmp_path, engine={"database_url": f"sqlite:///{folder / 'disparo.db'}"}, wallets=WALLETS
    )
    file = tmp_path / name(1, "cBRAD")
    file.write_text(
        "nome;telefone;cpf\n" + "".join(f"P{i};119{i:08d};{i}\n" for i in range(60_000))
    )
    command = [sys.executable, "-m", "engine.cli", "--config", str(config), "import", str(file)]
    today = ["--today", "20" + TODAY[4:] + "-" + TODAY[2:4] + "-" + TODAY[:2]]
    small = subprocess.run(
        [
            "unshare",
            "-rm",
            "sh",
            "-c",
            f'mount -t tmpfs -o size=3m tmpfs "{folder}" && exec "$@"',
            "sh",
            *command,
            *today,
        ],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ | {"COLUMNS": "200"},
    )
    assert small.returncode == 1, small.stdout + small.stderr
    assert "Traceback" not in small.stderr, small.stderr
    lines = [s for s in small.stderr.splitlines() if s.strip()]
    assert len(lines) == 1, small.stderr
    [line] = lines
    assert line.startswith(f"error: {file}: not imported: the database is full") or (
        "not imported: the database is full" in line and "run the import again" in line
    ), line
    roomy = subprocess.run([*command, *today], capture_output=True, text=True, check=False)
    assert roomy.returncode == 0, roomy.stdout + roomy.stderr


def test_a_publisher_writes_safe_csv_over_bytes() -> None:
    """docs/plugins.md: a publisher's ``write(out: IO[bytes])`` writes CSV for people through
    ``SafeWriter`` over a text wrapper (E2): one line per row, whatever the cells hold."""
    raw = io.BytesIO()
    text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
    writer = SafeWriter(text)
    writer.writerow(["nome", "email"])
    writer.writerow(["Ana\nssh-ed25519 AAAA", "=1+1"])
    text.flush()
    text.detach()
    lines = raw.getvalue().decode("utf-8-sig").split("\r\n")
    assert lines == ["nome;email", "Ana ssh-ed25519 AAAA;'=1+1", ""]
