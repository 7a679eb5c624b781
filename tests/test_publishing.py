"""Publishing (the publisher contract): what a source's publishers owe is written back once,
under a temporary name renamed when complete, recorded in the ledger only after; a failure
in the middle leaves no file and is published again on the next run."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any, ClassVar

import pytest
from click.testing import CliRunner

from engine import hookimpl
from engine.cli import cli
from engine.clock import TestClock
from engine.config import Config, ConfigError, Key, load_config
from engine.plugins import load_plugins
from engine.plugins.channel import Failed
from engine.plugins.publisher import Publication, Publisher
from engine.publish.service import Publishing
from engine.store import Store
from engine.testing import Registers, Scripted, World, hermetic_plugins
from tests.helpers import write_config
from tests.peers.ftp import FtpServer


class Counting(Publisher):
    """Owes one file a day, ``count_YYYYMMDD.txt``, with a line per day so far; fails to
    write while ``broken`` is set (after writing half)."""

    name = "counting"
    config_keys: ClassVar[dict[str, Key]] = {"prefix": Key("str", "count")}
    broken: ClassVar[bool] = False
    writes: ClassVar[int] = 0

    def due(self, now: datetime) -> Iterable[Publication]:
        day = now.strftime("%Y%m%d")
        prefix = self.source.options["prefix"]
        yield Publication(f"{prefix}:{day}", f"out/{prefix}_{day}.txt", {"day": day})

    def write(self, publication: Publication, out: IO[bytes]) -> None:
        Counting.writes += 1
        out.write(f"day {publication.detail['day']}\n".encode())
        if Counting.broken:
            raise OSError("disk full")
        out.write(b"end\n")


class CountingPlugin:
    @hookimpl
    def register_publishers(self, register: Any) -> None:
        register(Counting)


@pytest.fixture(autouse=True)
def counting() -> Iterator[None]:
    Counting.broken = False
    Counting.writes = 0
    plugins = load_plugins()
    plugins.register(CountingPlugin(), "counting")
    try:
        yield
    finally:
        plugins.unregister("counting")


def local_config(tmp_path: Path, **extra: Any) -> Config:
    (tmp_path / "drop").mkdir(exist_ok=True)
    path = write_config(
        tmp_path,
        sources={"drop": {"kind": "local", "path": "drop", "publish": ["counting"], **extra}},
    )
    return load_config(path, plugins=load_plugins())


def test_published_once_renamed_into_place_and_recorded(
    tmp_path: Path, store: Store, clock: TestClock
) -> None:
    config = local_config(tmp_path, prefix="daily")
    publishing = Publishing(store, load_plugins(), config, clock)
    assert [(o.path, o.status) for o in publishing.publish(dry_run=True)] == [
        ("out/daily_20261123.txt", "due")
    ]
    assert not (tmp_path / "drop" / "out").exists()  # a dry run writes nothing
    [done] = publishing.publish()
    target = tmp_path / "drop" / "out" / "daily_20261123.txt"
    assert done.status == "published" and done.size == len(b"day 20261123\nend\n")
    assert target.read_bytes() == b"day 20261123\nend\n"
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temporary left
    assert publishing.publish() == []  # the ledger holds it: nothing more is due
    [entry] = store.publications.of("drop", "counting")
    assert (entry.key, entry.path, dict(entry.detail)) == (
        "daily:20261123",
        "out/daily_20261123.txt",
        {"day": "20261123"},
    )
    assert Counting.writes == 1
    # what an incremental publisher reads back through the façade
    [publisher] = publishing.publishers(config.sources["drop"])
    [seen] = publisher.context.reads.published("drop", "counting")
    assert (seen.key, dict(seen.detail), seen.due_at) == (
        "daily:20261123",
        {"day": "20261123"},
        entry.published_at,
    )


def test_a_failure_mid_publication_leaves_nothing_and_publishes_again(
    tmp_path: Path, store: Store, clock: TestClock
) -> None:
    config = local_config(tmp_path)
    publishing = Publishing(store, load_plugins(), config, clock)
    Counting.broken = True
    [failed] = publishing.publish()
    assert failed.status == "failed" and "disk full" in (failed.message or "")
    out = tmp_path / "drop" / "out"
    assert not out.exists() or list(out.iterdir()) == []  # no half file on the source
    assert store.publications.of("drop") == []
    assert list((config.engine.spool_dir / "drop").iterdir()) == []  # no local leftover
    Counting.broken = False
    [done] = publishing.publish()
    assert done.status == "published"
    assert (out / "count_20261123.txt").read_bytes().endswith(b"end\n")


def test_publishing_to_an_ftp_server(
    tmp_path: Path, store: Store, clock: TestClock, ftp_server: FtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("FTP_PASSWORD", ftp_server.password)
    path = write_config(
        tmp_path,
        sources={
            "parceiro": {
                "kind": "ftp",
                "host": ftp_server.host,
                "port": ftp_server.port,
                "user": ftp_server.user,
                "password_env": "FTP_PASSWORD",
                "allow_private": True,
                "publish": ["counting"],
            }
        },
    )
    config = load_config(path, plugins=load_plugins())
    [done] = Publishing(store, load_plugins(), config, clock).publish()
    assert done.status == "published"
    remote = ftp_server.root / "out" / "count_20261123.txt"
    assert remote.read_bytes() == b"day 20261123\nend\n"
    assert sorted(p.name for p in remote.parent.iterdir()) == [remote.name]


def test_the_publish_setting_is_checked_with_the_publishers_keys(tmp_path: Path) -> None:
    (tmp_path / "drop").mkdir()
    path = write_config(
        tmp_path,
        sources={"drop": {"kind": "local", "path": "drop", "publish": ["countng"], "prefix": "x"}},
    )
    with pytest.raises(ConfigError) as found:
        load_config(path, plugins=load_plugins())
    messages = [str(p) for p in found.value.problems]
    assert any("sources.drop.publish[0]: unknown publisher `countng`" in m for m in messages)
    # `prefix` is a key of the publisher, so without it the key is unknown
    assert any("sources.drop.prefix: unknown key" in m for m in messages)


def test_disparo_publish_lists_what_it_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local_config(tmp_path)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    due = runner.invoke(cli, ["publish", "--dry-run", "--json"])
    assert due.exit_code == 0, due.output
    assert [o["status"] for o in json.loads(due.output)] == ["due"]
    done = runner.invoke(cli, ["publish", "drop"])
    assert done.exit_code == 0 and "count_" in done.output and "published" in done.output
    again = runner.invoke(cli, ["publish"])
    assert again.exit_code == 0 and "nothing is due" in again.output
    unknown = runner.invoke(cli, ["publish", "nowhere"])
    assert unknown.exit_code == 1 and "no source named nowhere" in unknown.output


# -- mailing-results ---------------------------------------------------------------------------


class ResultsSms(Scripted):
    name = "results-sms"
    file_word = "resultsms"


async def test_mailing_results_beside_the_processed_file_when_the_campaign_ends(
    tmp_path: Path,
) -> None:
    Scripted.reset()
    (tmp_path / "drop").mkdir()
    world = World.open(
        tmp_path,
        hermetic_plugins(Registers(ResultsSms)),
        sources={"drop": {"kind": "local", "path": "drop", "publish": ["mailing-results"]}},
        accounts={"sms": {"channel": "results-sms"}},
        wallets={"BRAD": {"sms_template": "Olá {{ nome }}"}},
    )
    Scripted.script["+5511988880002"] = [Failed("unknown number")]
    try:
        name = world.mailing_name(1, "cBRAD", "resultsms")
        report = world.import_file(
            f"BRAD/{name}", "nome;telefone\n=Ana;11988880001\nBia;11988880002\n"
        )
        assert report.campaign_id is not None
        publishing = Publishing(world.store, world.plugins, world.config, world.clock)
        assert publishing.publish(dry_run=True) == []  # not before the campaign ends
        [owed] = publishing.overview(world.config.sources["drop"])
        assert (owed.owed, owed.due_at, owed.published) == (1, None, ())
        await world.run_until_idle()
        await world.run(2)
        assert world.campaign(report.campaign_id).status == "completed"
        [done] = publishing.publish()
        assert done.status == "published"
        target = tmp_path / "drop" / "processed" / "BRAD" / (name[:-4] + ".resultado.csv")
        assert done.path == target.relative_to(tmp_path / "drop").as_posix()
        lines = target.read_text(encoding="utf-8-sig").splitlines()
        assert lines[0].startswith("codigo;nome;endereco;status;")
        assert [line.split(";")[1:4] for line in lines[1:]] == [
            ["'=Ana", "11988880001", "sent"],  # formula-safe (E2)
            ["Bia", "11988880002", "failed"],
        ]
        assert publishing.publish() == []  # once
        [shown] = publishing.overview(world.config.sources["drop"])
        assert shown.owed == 0 and shown.published == (done.path,)
    finally:
        await world.close()
        Scripted.reset()


class Picky(Publisher):
    """Owes two files; cannot write the first (a bug of its own)."""

    name = "picky"

    def due(self, now: datetime) -> Iterable[Publication]:
        yield Publication("bad", "out/bad.txt")
        yield Publication("good", "out/good.txt")

    def write(self, publication: Publication, out: IO[bytes]) -> None:
        if publication.key == "bad":
            raise ValueError("cannot write this one")
        out.write(b"ok\n")


def test_a_publisher_failing_on_one_file_does_not_hold_the_others(
    tmp_path: Path, store: Store, clock: TestClock
) -> None:
    plugins = load_plugins()
    plugins.register(Registers(Picky), "picky")
    try:
        (tmp_path / "drop").mkdir()
        path = write_config(
            tmp_path, sources={"drop": {"kind": "local", "path": "drop", "publish": ["picky"]}}
        )
        config = load_config(path, plugins=plugins)
        outcomes = Publishing(store, plugins, config, clock).publish()
    finally:
        plugins.unregister(name="picky")
    assert [(o.key, o.status) for o in outcomes] == [("bad", "failed"), ("good", "published")]
    assert "ValueError: cannot write this one" in (outcomes[0].message or "")
    assert sorted(p.name for p in (tmp_path / "drop" / "out").iterdir()) == ["good.txt"]
    assert [p.key for p in store.publications.of("drop")] == ["good"]
