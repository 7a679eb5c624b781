"""Collection (F7–F13): stability, spool, ledger, remote moves and reports, faults, schedules."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engine.clock import TestClock
from engine.config import Config
from engine.intake.collector import Collector, PollSummary
from engine.plugins.source import CATEGORIES, SourceError
from engine.store import Store
from engine.store import schema as t
from engine.testing.eventually import eventually
from tests.helpers import collector, load, name, write_config
from tests.peers.ftp import FtpServer
from tests.peers.sftp import SftpServer

CSV = "nome;telefone;email;cpf\nAna;11998877665;ana@example.com;111\nBia;11988887777;b@x.com;222\n"


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    folder = tmp_path / "drop"
    folder.mkdir()
    return folder


@pytest.fixture
def config(tmp_path: Path, drop: Path) -> Config:
    return load(
        write_config(
            tmp_path,
            sources={"drop": {"kind": "local", "path": "drop"}},
            wallets={"BRAD": {"sms_template": "Oi {{ nome }}"}},
        )
    )


def poll(c: Collector, source: str = "drop") -> PollSummary:
    """One poll, then the test clock moves on as the source's schedule would (2 minutes by
    default: longer than any minimum age, F8)."""
    settings = c.config.sources[source]
    summary = c.poll_blocking(settings)
    assert isinstance(c.clock, TestClock)
    c.clock.jump(settings.schedule.every or timedelta(minutes=2))
    return summary


def count(store: Store, table: sa.Table) -> int:
    with store.read() as c:
        return int(c.execute(sa.select(sa.func.count()).select_from(table)).scalar() or 0)


def statuses(store: Store) -> dict[str, str]:
    return {o.path: o.status for o in store.files.observations()}


def test_f8_a_file_is_taken_only_when_stable(
    store: Store, config: Config, clock: TestClock, drop: Path
) -> None:
    c = collector(store, config, clock)
    file = drop / name(1, "cBRAD")
    file.write_text(CSV[:40])  # half uploaded
    first = poll(c)
    assert first.unstable == [file.name] and count(store, t.contacts) == 0
    file.write_text(CSV)  # still growing: it changed since the last listing
    second = poll(c)
    assert second.unstable == [file.name] and count(store, t.contacts) == 0
    third = poll(c)  # the same size and time twice: taken
    assert [r.outcome for r in third.reports] == ["imported"]
    assert count(store, t.contacts) == 2
    assert (drop / "processed" / file.name).is_file() and not file.exists()
    assert statuses(store)[file.name] == "imported"


def test_f11_rejected_files_get_a_bilingual_report(
    store: Store, config: Config, clock: TestClock, drop: Path
) -> None:
    c = collector(store, config, clock)
    (drop / "BRAD").mkdir()
    bad_name = drop / name(1, "cBRAD_zz")
    bad_rows = drop / "BRAD" / name(2, "smslong")
    bad_name.write_text(CSV)
    bad_rows.write_text("nome;telefone\nAna;\n")
    poll(c)
    poll(c)
    report = (drop / "rejected" / (bad_name.stem + ".erro.txt")).read_text()
    assert "Situação: RECUSADO" in report and "Status: REJECTED" in report
    assert "[N7] unknown-parameter" in report and "`_zz`" in report
    assert "não é um parâmetro" in report and "is not a parameter" in report
    assert (drop / "rejected" / bad_name.name).is_file() and not bad_name.exists()
    # a file whose rows are all unusable: rejected, with the rows listed beside it
    folder = drop / "rejected" / "BRAD"
    assert (folder / bad_rows.name).is_file()
    assert "[N24] no-valid-rows" in (folder / (bad_rows.stem + ".erro.txt")).read_text()
    rows = (folder / (bad_rows.stem + ".rejeitados.csv")).read_text(encoding="utf-8-sig")
    assert "missing-address" in rows and "Ana" in rows
    assert count(store, t.contacts) == 0


def test_f11_accepted_file_with_bad_rows(
    store: Store, config: Config, clock: TestClock, drop: Path
) -> None:
    c = collector(store, config, clock)
    file = drop / name(1, "cBRAD_smslong_h")
    file.write_text("nome;telefone\nAna;11998877665\nFixo;1133334444\n")
    poll(c)
    summary = poll(c)
    assert [r.outcome for r in summary.reports] == ["imported"]
    rows = (drop / "processed" / (file.stem + ".rejeitados.csv")).read_text(encoding="utf-8-sig")
    assert "not-mobile" in rows and "1133334444" in rows
    assert not list((drop / "processed").glob("*.erro.txt"))


def test_n5_other_days_stay_in_place(
    store: Store, config: Config, clock: TestClock, drop: Path
) -> None:
    c = collector(store, config, clock)
    tomorrow = drop / name(1, "cBRAD", day="241126")
    yesterday = drop / name(2, "cBRAD", day="221126")
    other = drop / "leia-me.txt"
    for f in (tomorrow, yesterday, other):
        f.write_text(CSV)
    poll(c)
    summary = poll(c)
    assert summary.waiting == [tomorrow.name] and summary.reports == []
    assert all(f.exists() for f in (tomorrow, yesterday, other))
    assert statuses(store) == {
        tomorrow.name: "waiting",
        yesterday.name: "ignored",
        other.name: "not-mailing",
    }
    clock.jump(timedelta(days=1))  # it has been stable all along: taken at once
    assert [r.outcome for r in poll(c).reports] == ["imported"]
    assert not tomorrow.exists() and yesterday.exists()


def test_f10_the_same_file_uploaded_twice_is_imported_once(
    store: Store, config: Config, clock: TestClock, drop: Path
) -> None:
    c = collector(store, config, clock)
    file = drop / name(1, "cBRAD")
    file.write_text(CSV)
    poll(c)
    poll(c)
    file.write_text(CSV)  # uploaded again
    poll(c)
    summary = poll(c)
    assert [r.outcome for r in summary.reports] == ["duplicate"]
    assert count(store, t.contacts) == 2 and count(store, t.mailings) == 1
    report = (drop / "rejected" / (file.stem + ".erro.txt")).read_text()
    assert "[F10] duplicate-file" in report
    assert (drop / "processed" / file.name).is_file()


def test_n6_second_file_with_the_same_sequence(
    store: Store, config: Config, clock: TestClock, drop: Path
) -> None:
    c = collector(store, config, clock)
    (drop / name(7, "cBRAD")).write_text(CSV)
    (drop / name(7, "cBRAD_dOutro")).write_text(CSV.replace("Ana", "Anna"))
    poll(c)
    summary = poll(c)
    outcomes = sorted(r.outcome for r in summary.reports)
    assert outcomes == ["imported", "rejected"]
    rejected = next(r for r in summary.reports if r.outcome == "rejected")
    assert rejected.problems[0].code == "duplicate-sequence"


def test_email_body_companion_moves_with_its_file(
    store: Store, clock: TestClock, tmp_path: Path, drop: Path
) -> None:
    config = load(write_config(tmp_path, sources={"drop": {"kind": "local", "path": "drop"}}))
    c = collector(store, config, clock)
    csv_file = drop / name(1, "cBRAD_email_teOi")
    csv_file.write_text("nome;email\nAna;a@x.com\n")
    (drop / (csv_file.stem + ".html")).write_text("<p>Oi {{ nome }}</p>")
    poll(c)
    summary = poll(c)
    assert [r.outcome for r in summary.reports] == ["imported"]
    assert sorted(p.name for p in (drop / "processed").iterdir()) == [
        csv_file.name,
        csv_file.stem + ".html",
    ]
    with store.read() as conn:
        assert conn.execute(sa.select(t.campaigns.c.body)).scalar() == "<p>Oi {{ nome }}</p>"


def test_a_name_taken_in_processed_gets_a_numbered_twin(
    store: Store, config: Config, clock: TestClock, drop: Path
) -> None:
    c = collector(store, config, clock)
    (drop / "processed").mkdir()
    (drop / "processed" / name(1, "cBRAD")).write_text("older")
    (drop / name(1, "cBRAD")).write_text(CSV)
    poll(c)
    poll(c)
    assert (drop / "processed" / name(1, "cBRAD")).read_text() == "older"
    assert (drop / "processed" / name(1, "cBRAD").replace(".csv", ".2.csv")).read_text() == CSV


def test_a_crash_before_the_move_is_finished_without_importing_again(
    store: Store, config: Config, clock: TestClock, drop: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from plugins.sources.local import LocalSource

    c = collector(store, config, clock)
    file = drop / name(1, "cBRAD")
    file.write_text(CSV)
    poll(c)
    real_move = LocalSource.move

    def lost(self: LocalSource, path: str, new_path: str) -> None:
        raise SourceError("lost", "the connection dropped before the move")

    monkeypatch.setattr(LocalSource, "move", lost)
    summary = poll(c)
    assert not summary.ok and file.exists() and count(store, t.contacts) == 2
    monkeypatch.setattr(LocalSource, "move", real_move)
    summary = poll(c)  # the ledger says imported but not moved: finish the move only
    assert [r.outcome for r in summary.reports] == ["duplicate"]
    assert (drop / "processed" / file.name).is_file() and not file.exists()
    assert not (drop / "rejected").exists()  # finished, not treated as a re-upload
    assert count(store, t.mailings) == 1
    assert [e.remote_done for e in store.files.ledger()] == [True]


def test_f13_unsafe_names_are_refused_and_left_alone(
    store: Store, config: Config, clock: TestClock, drop: Path
) -> None:
    c = collector(store, config, clock)
    weird = drop / (name(1, "cBRAD")[:-4] + "\x07.csv")
    weird.write_text(CSV)
    back = drop / "a\\b.csv"
    back.write_text(CSV)
    summary = poll(c)
    assert sorted(summary.refused) == sorted([ascii(weird.name)[1:-1], ascii(back.name)[1:-1]])
    poll(c)
    assert weird.exists() and back.exists() and count(store, t.files) == 0
    assert set(statuses(store).values()) == {"refused"}


def test_f7_schedules_interval_and_cron_in_the_zone(
    store: Store, clock: TestClock, tmp_path: Path, drop: Path
) -> None:
    config = load(
        write_config(
            tmp_path,
            sources={
                "every": {"kind": "local", "path": "drop", "every": "5m"},
                "hourly": {"kind": "local", "path": "drop", "cron": "0 * * * *"},
                "daily": {"kind": "local", "path": "drop", "cron": "30 4 * * *"},
            },
        )
    )
    c = collector(store, config, clock)
    now = datetime(2026, 11, 23, 12, 7, tzinfo=UTC)
    assert c.next_poll(config.sources["every"], now) == now + timedelta(minutes=5)
    assert c.next_poll(config.sources["hourly"], now) == datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
    # 04:30 in São Paulo is 07:30 UTC, the next day
    assert c.next_poll(config.sources["daily"], now) == datetime(2026, 11, 24, 7, 30, tzinfo=UTC)


async def test_run_forever_polls_on_schedule(
    store: Store, config: Config, clock: TestClock, drop: Path
) -> None:
    import asyncio

    c = collector(store, config, clock)
    stop = asyncio.Event()
    (drop / name(1, "cBRAD")).write_text(CSV)
    runner = asyncio.create_task(c.run_forever(stop))
    # polls run in worker threads: the collector is done with one when it sleeps on the clock
    await eventually(
        lambda: statuses(store) and clock.sleepers, what="the first poll, then a sleep"
    )
    assert count(store, t.contacts) == 0  # seen once: not yet stable
    await clock.advance(timedelta(minutes=2))
    await eventually(lambda: count(store, t.contacts), what="the file imported at the next poll")
    stop.set()
    await runner
    assert count(store, t.contacts) == 2
    state = store.files.source_states()["drop"]
    assert state.status == "ok" and state.next_poll_at == state.last_poll_at + timedelta(minutes=2)


def test_two_engine_nodes_import_a_file_once(
    store: Store, config: Config, clock: TestClock, drop: Path
) -> None:
    a, b = collector(store, config, clock), collector(store, config, clock)
    (drop / name(1, "cBRAD")).write_text(CSV)
    poll(a)
    results: list[PollSummary] = []
    threads = [threading.Thread(target=lambda c=c: results.append(poll(c))) for c in (a, b)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    outcomes = [r.outcome for s in results for r in s.reports]
    assert outcomes.count("imported") == 1
    assert count(store, t.mailings) == 1 and count(store, t.contacts) == 2


# -- remote kinds ------------------------------------------------------------------------------


def remote_config(tmp_path: Path, table: dict[str, Any]) -> Config:
    return load(
        write_config(tmp_path, sources={"remote": table}, wallets={"BRAD": {"sms_template": "Oi"}})
    )


@pytest.fixture(autouse=True)
def _passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FTP_PASSWORD", "s3cret-ftp")
    monkeypatch.setenv("SFTP_PASSWORD", "s3cret-sftp")


def big_csv(rows: int = 3000) -> str:
    return "nome;telefone;cpf\n" + "".join(f"P{i};119{i:08d};{i}\n" for i in range(rows))


def assert_dropped_then_imported_once(
    c: Collector, store: Store, root: Path, server: Any, spool: Path
) -> None:
    file = root / name(1, "cBRAD")
    file.write_text(big_csv())
    poll(c, "remote")
    server.drop_next_transfer(after_bytes=5000)
    broken = poll(c, "remote")
    assert not broken.ok and (broken.error or "").startswith(CATEGORIES["lost"])
    assert count(store, t.files) == 0 and count(store, t.contacts) == 0
    assert not [p for p in spool.rglob("*") if p.is_file()]  # F9: nothing left behind
    summary = poll(c, "remote")  # retried on the next poll
    assert [r.outcome for r in summary.reports] == ["imported"]
    assert count(store, t.contacts) == 3000 and count(store, t.files) == 1
    assert (root / "processed" / file.name).is_file()
    assert [r.outcome for r in poll(c, "remote").reports] == []  # and never again


def test_ftp_dropped_download_leaves_nothing_and_imports_once_later(
    store: Store, clock: TestClock, tmp_path: Path, ftp_server: FtpServer
) -> None:
    config = remote_config(
        tmp_path,
        {
            "kind": "ftp",
            "host": "127.0.0.1",
            "port": ftp_server.port,
            "user": ftp_server.user,
            "password_env": "FTP_PASSWORD",
            "allow_private": True,
        },
    )
    assert_dropped_then_imported_once(
        collector(store, config, clock), store, ftp_server.root, ftp_server, tmp_path / "spool"
    )


def test_ftps_collection(
    store: Store, clock: TestClock, tmp_path: Path, ftps_server: FtpServer
) -> None:
    config = remote_config(
        tmp_path,
        {
            "kind": "ftps",
            "host": "127.0.0.1",
            "port": ftps_server.port,
            "user": ftps_server.user,
            "password_env": "FTP_PASSWORD",
            "ca_file": str(ftps_server.ca_pem),
            "allow_private": True,
        },
    )
    c = collector(store, config, clock)
    (ftps_server.root / "BRAD").mkdir()
    (ftps_server.root / "BRAD" / name(1, "smslong")).write_text("nome;telefone\nA;\n")
    (ftps_server.root / name(2, "cBRAD")).write_text(CSV)
    poll(c, "remote")
    summary = poll(c, "remote")
    assert sorted(r.outcome for r in summary.reports) == ["imported", "rejected"]
    rejected = ftps_server.root / "rejected" / "BRAD"
    assert (rejected / (name(1, "smslong")[:-4] + ".erro.txt")).is_file()
    assert (ftps_server.root / "processed" / name(2, "cBRAD")).is_file()
    assert ftps_server.session_reuse_refusals == 0


# paramiko's read-ahead thread dies with the connection and reports it as an unhandled
# thread exception: that is paramiko's own thread, not a failure of the download's handling
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_sftp_dropped_download_leaves_nothing_and_imports_once_later(
    store: Store, clock: TestClock, tmp_path: Path, sftp_server: SftpServer
) -> None:
    config = remote_config(
        tmp_path,
        {
            "kind": "sftp",
            "host": "127.0.0.1",
            "port": sftp_server.port,
            "user": sftp_server.user,
            "password_env": "SFTP_PASSWORD",
            "host_key_fingerprint": sftp_server.fingerprint,
            "allow_private": True,
        },
    )
    assert_dropped_then_imported_once(
        collector(store, config, clock), store, sftp_server.root, sftp_server, tmp_path / "spool"
    )


def test_a_source_that_fails_is_recorded_and_others_go_on(
    store: Store, clock: TestClock, tmp_path: Path, drop: Path
) -> None:
    (tmp_path / "missing").mkdir()  # there when the configuration is loaded…
    config = load(
        write_config(
            tmp_path,
            sources={
                "gone": {"kind": "local", "path": "missing"},
                "drop": {"kind": "local", "path": "drop"},
            },
        )
    )
    (tmp_path / "missing").rmdir()  # …and gone by the time it is polled
    c = collector(store, config, clock)
    (drop / name(1, "cBRAD")).write_text(CSV)
    gone = poll(c, "gone")
    assert not gone.ok and "does not exist" in (gone.error or "")
    assert store.files.source_states()["gone"].status == "error"
    poll(c)
    assert [r.outcome for r in poll(c).reports] == ["imported"]


def test_run_until_idle_cli(run_cli: Any, tmp_path: Path, drop: Path) -> None:
    config = write_config(tmp_path, sources={"drop": {"kind": "local", "path": "drop"}})
    today = datetime.now(UTC).astimezone(load(config).tz).strftime("%d%m%y")
    (drop / name(1, "cBRAD", day=today)).write_text(CSV)
    result = run_cli("--config", str(config), "run", "--until-idle", "--settle", "0.05")
    assert result.exit_code == 0, result.output
    assert "IMPORTED" in result.output and "contacts imported" in result.output
    assert (drop / "processed" / name(1, "cBRAD", day=today)).is_file()


def test_f13_unsafe_names_from_an_ftp_listing(
    store: Store, clock: TestClock, tmp_path: Path, ftp_server: FtpServer
) -> None:
    config = remote_config(
        tmp_path,
        {
            "kind": "ftp",
            "host": "127.0.0.1",
            "port": ftp_server.port,
            "user": ftp_server.user,
            "password_env": "FTP_PASSWORD",
            "allow_private": True,
        },
    )
    c = collector(store, config, clock)
    (ftp_server.root / "a\\b.csv").write_text(CSV)  # legal on the server, unsafe here
    (ftp_server.root / (name(1, "cBRAD")[:-4] + "\x07.csv")).write_text(CSV)
    first = poll(c, "remote")
    poll(c, "remote")
    assert len(first.refused) == 2 and count(store, t.files) == 0
    assert (ftp_server.root / "a\\b.csv").exists()
