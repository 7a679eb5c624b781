"""Groups (G1–G3): by hand, by CSV file, and fed by the seed's paginated API (a local aiohttp
server, tests/peers/group_feed.py), with every G2 failure keeping the previous members and the
URL's token never in any output, log or stored message."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engine.testing import eventually, write_config, write_secret
from tests.peers.group_feed import GroupFeed

TOKEN = "tok-8f3a9c1e7b2d4f60"


def _records(n: int, prefix: str = "pessoa") -> list[dict[str, Any]]:
    return [{"nome": f"Pessoa {i}", "email": f"{prefix}{i}@example.com"} for i in range(1, n + 1)]


@pytest.fixture
def feed() -> Iterator[GroupFeed]:
    server = GroupFeed(TOKEN, records=_records(5)).start()
    yield server
    server.stop()


def _config(tmp_path: Path, feed: GroupFeed, **extra: Any) -> Path:
    write_secret(tmp_path / "secrets" / "grupo.url", feed.url)
    table = {
        "url_file": "secrets/grupo.url",
        "allow_private": True,
        "timeout": "1s",
        **extra,
    }
    return write_config(
        tmp_path, engine={"database_url": f"sqlite:///{tmp_path}/d.db"}, groups={"parceiros": table}
    )


def _groups(run_cli: Any, cfg: Path) -> dict[str, Any]:
    result = run_cli("--config", str(cfg), "groups", "--json")
    assert result.exit_code == 0, result.output
    return {g["name"]: g for g in json.loads(result.output)}


def _emails(run_cli: Any, cfg: Path, name: str) -> list[str]:
    result = run_cli("--config", str(cfg), "groups", "show", name, "--per-page", "100", "--json")
    assert result.exit_code == 0, result.output
    return [m["email"] or m["phone"] for m in json.loads(result.output)["items"]]


def test_groups_by_hand_and_by_file(run_cli: Any, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, engine={"database_url": f"sqlite:///{tmp_path}/d.db"})
    c = ("--config", str(cfg))
    assert run_cli(*c, "groups", "create", "sp").exit_code == 0
    again = run_cli(*c, "groups", "create", "sp")
    assert again.exit_code == 1 and "already exists" in again.output
    # N22: Windows-1252, comma-separated, headers by alias (N23), one bad address (N26)
    csv = tmp_path / "contatos.csv"
    csv.write_bytes(
        "Nome,E-mail,Cidade\nJosé,jose@example.com,São Paulo\nBia,bia@,Rio\n".encode("cp1252")
    )
    done = run_cli(*c, "groups", "import", "sp", str(csv))
    assert done.exit_code == 0, done.output
    assert "1 of 2 row(s) added" in done.output and "N26" in done.output
    assert run_cli(*c, "groups", "add", "sp", "Ana@Example.com", "11987654321").exit_code == 0
    bad = run_cli(*c, "groups", "add", "sp", "nobody@")
    assert bad.exit_code == 1 and "nothing changed" in bad.output and "N26" in bad.output
    # an e-mail without its @ is not called "not a phone number": both forms are named
    typo = run_cli(*c, "groups", "add", "sp", "ana.example.com")
    assert typo.exit_code == 1 and "neither an e-mail address" in typo.output, typo.output
    assert _emails(run_cli, cfg, "sp") == ["jose@example.com", "Ana@example.com", "+5511987654321"]
    assert run_cli(*c, "suppressions", "add", "jose@example.com").exit_code == 0
    listed = _groups(run_cli, cfg)["sp"]
    assert (listed["members"], listed["suppressed"], listed["source"]) == (3, 1, "manual")
    removed = run_cli(*c, "groups", "remove", "sp", "ana@example.com")
    assert removed.exit_code == 0 and "1 removed, 2 member(s) left" in removed.output
    page = run_cli(*c, "groups", "show", "sp", "--per-page", "1")
    assert "page 1 of 2" in page.output and "--page 2" in page.output
    missing = run_cli(*c, "groups", "import", "nope", str(csv))
    assert missing.exit_code == 1 and "groups create nope" in missing.output


def test_a_feed_is_read_page_by_page_and_replaces_the_members(
    run_cli: Any, tmp_path: Path, feed: GroupFeed
) -> None:
    cfg = _config(tmp_path, feed)
    done = run_cli("--config", str(cfg), "groups", "sync", "parceiros")
    assert done.exit_code == 0, done.output
    assert "5 member(s) from 5 record(s) in 3 page(s)" in done.output
    assert [r.split("pagina=")[1] for r in feed.requests] == ["1", "2", "3"]
    assert _emails(run_cli, cfg, "parceiros") == [f"pessoa{i}@example.com" for i in range(1, 6)]
    g = _groups(run_cli, cfg)["parceiros"]
    assert (g["source"], g["sync_status"], g["members"]) == ("http", "ok", 5)
    # a complete read replaces the members (one transaction)
    feed.records = _records(3, prefix="novo")
    assert run_cli("--config", str(cfg), "groups", "sync", "parceiros").exit_code == 0
    assert _emails(run_cli, cfg, "parceiros") == [f"novo{i}@example.com" for i in range(1, 4)]


@pytest.mark.parametrize(
    ("mode", "extra", "reason"),
    [
        ("wrong-page", {}, "page 2 was asked, and the feed answered page 3"),
        ("not-json", {}, "page 1 is not JSON"),
        ("short", {}, "they do not add up"),
        ("hang", {}, "page 2 did not answer within 1 s"),
        ("down", {}, "page 1 answered HTTP 503, 3 times"),
        ("ok", {"max_records": 4}, "more than max_records (4)"),
        ("ok", {"max_page_bytes": 1024}, None),
    ],
)
def test_every_g2_failure_keeps_the_members_and_never_shows_the_token(
    run_cli: Any,
    tmp_path: Path,
    feed: GroupFeed,
    caplog: pytest.LogCaptureFixture,
    mode: str,
    extra: dict[str, Any],
    reason: str | None,
) -> None:
    caplog.set_level(logging.DEBUG)
    cfg = _config(tmp_path, feed, **extra)
    outputs = []
    if extra.get("max_page_bytes"):
        feed.records = [{"nome": "x" * 300, "email": f"p{i}@example.com"} for i in range(8)]
        feed.page_size = 8
        reason = "page 1 is larger than 1,024 bytes"
    else:
        first = run_cli("--config", str(cfg), "groups", "sync", "parceiros")
        outputs.append(first.output)
        if not extra:
            assert first.exit_code == 0, first.output
            assert len(_emails(run_cli, cfg, "parceiros")) == 5
    feed.mode = mode
    feed.records = feed.records + _records(1, prefix="extra")
    failed = run_cli("--config", str(cfg), "groups", "sync", "parceiros")
    outputs.append(failed.output)
    assert failed.exit_code == 1
    assert reason is not None and reason in failed.output, failed.output
    assert "keeps its members" in failed.output
    g = _groups(run_cli, cfg)["parceiros"]
    assert g["sync_status"] == "error" and reason in g["sync_message"]
    assert g["members"] == (0 if extra else 5)
    outputs.append(json.dumps(g))
    outputs.append(caplog.text)
    engine = sa.create_engine(f"sqlite:///{tmp_path}/d.db")
    with engine.connect() as c:
        for table in ("audit_log", "groups"):
            outputs.append(repr(c.execute(sa.text(f"SELECT * FROM {table}")).all()))
    engine.dispose()
    for text in outputs:
        assert TOKEN not in text  # G3


def test_a_5xx_is_retried(run_cli: Any, tmp_path: Path, feed: GroupFeed) -> None:
    cfg = _config(tmp_path, feed)
    feed.mode = "flaky"
    done = run_cli("--config", str(cfg), "groups", "sync", "parceiros")
    assert done.exit_code == 0, done.output
    assert len(feed.requests) == 6  # each of the 3 pages: 503, then right


def test_host_rules_and_plain_http(run_cli: Any, tmp_path: Path, feed: GroupFeed) -> None:
    cfg = _config(tmp_path, feed, allow_private=False)
    refused = run_cli("--config", str(cfg), "groups", "sync", "parceiros")
    assert refused.exit_code == 1
    assert "plain http" in refused.output and "G3" in refused.output
    assert TOKEN not in refused.output and feed.requests == []
    write_secret(tmp_path / "secrets" / "grupo.url", feed.url.replace("http:", "https:"))
    private = run_cli("--config", str(cfg), "groups", "sync", "parceiros")
    assert private.exit_code == 1 and "F3" in private.output, private.output
    assert TOKEN not in private.output and feed.requests == []


def test_sync_of_a_group_without_a_feed(run_cli: Any, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, engine={"database_url": f"sqlite:///{tmp_path}/d.db"})
    result = run_cli("--config", str(cfg), "groups", "sync", "sp")
    assert result.exit_code == 1 and "[groups.sp]" in result.output and "G1" in result.output


async def test_the_engine_syncs_fed_groups_on_their_schedule(
    tmp_path: Path, feed: GroupFeed
) -> None:
    from engine.clock import RealClock
    from engine.config import load_config
    from engine.intake.groupfeed import run_group_feeds
    from engine.plugins import builtin_plugins
    from engine.store import Store

    cfg = load_config(_config(tmp_path, feed, every="1s"), plugins=builtin_plugins())
    store = Store.open(f"sqlite:///{tmp_path}/d.db")
    stop = asyncio.Event()
    task = asyncio.create_task(run_group_feeds(store, cfg, RealClock(), stop))
    try:

        def members() -> int:
            group = store.groups.get("parceiros")
            return group.members if group else -1

        await eventually(lambda: members() == 5, what="the first scheduled sync")
        feed.records = _records(2, prefix="outro")
        await eventually(lambda: members() == 2, what="the next scheduled sync (every 1s)")
    finally:
        stop.set()
        await task
        store.close()


def test_tls_is_verified(run_cli: Any, tmp_path: Path) -> None:
    import trustme

    from tests.peers.common import server_context

    ca = trustme.CA()
    server = GroupFeed(TOKEN, records=_records(3), tls=server_context(ca, ("127.0.0.1",))).start()
    try:
        cfg = _config(tmp_path, server)
        untrusted = run_cli("--config", str(cfg), "groups", "sync", "parceiros")
        assert untrusted.exit_code == 1
        assert (
            "TLS certificate is not trusted" in untrusted.output and "ca_file" in untrusted.output
        )
        assert TOKEN not in untrusted.output
        ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        cfg = _config(tmp_path, server, ca_file="ca.pem")
        trusted = run_cli("--config", str(cfg), "groups", "sync", "parceiros")
        assert trusted.exit_code == 0, trusted.output
        assert "3 member(s)" in trusted.output
    finally:
        server.stop()
