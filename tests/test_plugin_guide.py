"""The plugin guide (docs/plugins.md) is real: every code block in it is taken from a file
that runs, and the examples it shows for each kind of plugin (examples/guide/, the example
package in examples/disparo-webhook) work, checked with the test kit against real peers."""

from __future__ import annotations

import json
import re
import ssl
import threading
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import trustme

from engine.config import ConfigError
from engine.plugins import load_plugins
from engine.plugins.source import Source, SourceError
from engine.publish.service import Publishing
from engine.testing import (
    FolderFiles,
    NotImported,
    Registers,
    Scripted,
    World,
    check_source,
    hermetic_plugins,
    make_config,
)
from examples.guide import commands, contacts_format, https_index, observers, summary_publisher

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "plugins.md"
_BLOCK = re.compile(
    r"(?:<!-- from: (?P<source>\S+) -->\n)?```(?P<lang>\w*)\n(?P<code>.*?)```", re.S
)


def test_every_code_block_of_the_guide_comes_from_a_file_that_runs() -> None:
    blocks = list(_BLOCK.finditer(GUIDE.read_text(encoding="utf-8")))
    assert len(blocks) > 10
    for block in blocks:
        code, source = block["code"], block["source"]
        if block["lang"] in ("python", "toml"):
            assert source, f"a {block['lang']} block has no `<!-- from: … -->`:\n{code}"
        if source:
            text = (ROOT / source).read_text(encoding="utf-8")
            assert code in text, f"this block is not (or no longer) in {source}:\n{code}"


# -- the source kind: https-index against an HTTPS server on loopback ------------------------


class _Index(BaseHTTPRequestHandler):
    """Serves the files under the server's ``root`` at ``/in/…`` and their ``index.json``."""

    server: IndexServer

    def do_GET(self) -> None:
        root = self.server.root
        if self.headers.get("Authorization") != "Bearer index-token":
            return self._answer(401, b"who are you?")
        path = unquote(urlsplit(self.path).path)
        if not path.startswith("/in/"):
            return self._answer(404, b"no")
        name = path.removeprefix("/in/")
        if name == "index.json":
            files = [p for p in sorted(root.rglob("*")) if p.is_file()]
            index = [
                {
                    "path": p.relative_to(root).as_posix(),
                    "size": p.stat().st_size,
                    "modified": datetime.fromtimestamp(p.stat().st_mtime, UTC).isoformat(),
                }
                for p in files
            ]
            return self._answer(200, json.dumps(index).encode())
        target = root / name
        if ".." in name.split("/") or not target.is_file():
            return self._answer(404, b"no")
        return self._answer(200, target.read_bytes())

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class IndexServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, ca: trustme.CA) -> None:
        super().__init__(("127.0.0.1", 0), _Index)
        self.root = root
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        self.socket = context.wrap_socket(self.socket, server_side=True)


@pytest.fixture
def index_server(tmp_path: Path) -> Iterator[tuple[IndexServer, Path]]:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    root = tmp_path / "published"
    root.mkdir()
    server = IndexServer(root, ca)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, ca_file
    server.shutdown()
    server.server_close()
    thread.join(5)


def index_source(tmp_path: Path, server: IndexServer, ca_file: Path | None, **extra: Any) -> Source:
    table = {
        "kind": "https-index",
        "host": "127.0.0.1",
        "port": server.server_address[1],
        "path": "/in",
        "token_env": "INDEX_TOKEN",
        "allow_private": True,  # a loopback server (F3)
        **({"ca_file": str(ca_file)} if ca_file else {}),
        **extra,
    }
    config = make_config(tmp_path, hermetic_plugins(https_index), sources={"web": table})
    return https_index.HttpsIndexSource(config.sources["web"])


@pytest.fixture(autouse=True)
def _index_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INDEX_TOKEN", "index-token")


def test_the_https_index_kind_keeps_the_read_only_source_contract(
    tmp_path: Path, index_server: tuple[IndexServer, Path]
) -> None:
    server, ca_file = index_server
    source = index_source(tmp_path, server, ca_file)
    assert source.describe() == f"https://127.0.0.1:{server.server_address[1]}/in/"
    check_source(source, FolderFiles(server.root))


def test_the_https_index_kind_fails_in_plain_words(
    tmp_path: Path, index_server: tuple[IndexServer, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, ca_file = index_server

    def category(source: Source) -> str:
        with pytest.raises(SourceError) as failed, source.session():
            source.list_files()
        return failed.value.category

    assert category(index_source(tmp_path, server, None)) == "tls"  # the system's CAs
    assert category(index_source(tmp_path, server, ca_file, path="/nowhere")) == "not-found"
    # a name resolving to a private address, without allow_private (F3)
    assert (
        category(index_source(tmp_path, server, ca_file, host="localhost", allow_private=False))
        == "private-host"
    )
    monkeypatch.setenv("INDEX_TOKEN", "wrong")
    assert category(index_source(tmp_path, server, ca_file)) == "auth"
    with pytest.raises(ConfigError, match=r'write host = "files\.example\.com"'):
        index_source(tmp_path, server, ca_file, host="https://files.example.com/in")


# -- the format, the publisher, the observers and the command --------------------------------


class GuideSms(Scripted):
    name = "guide-sms"
    file_word = "guidesms"


async def test_the_contacts_format_imports_a_wallets_contacts(tmp_path: Path) -> None:
    world = World.open(tmp_path, hermetic_plugins(contacts_format), wallets={"BRAD": {}})
    try:
        report = world.import_file(
            "BRAD/contatos_vip.csv",
            "nome;telefone;cidade\nAna;(11) 98888-0001;Recife\n\nBia;123;Natal\n",
            format="contacts",
        )
        assert report.outcome == "imported", report.problems
        assert (report.wallet, report.imported_rows, report.new_contacts) == ("BRAD", 1, 1)
        assert sum(report.rejected_rows.values()) == 1
        with pytest.raises(NotImported) as refused:
            world.import_file("contatos_vip.csv", "nome;telefone\n", format="contacts")
        assert [p.code for p in refused.value.verdict.problems] == ["no-wallet"]
        with pytest.raises(NotImported, match="not-mailing"):
            world.import_file("BRAD/other.csv", "x", format="contacts")
        rejected = world.import_file("BRAD/contatos_x.csv", "nome;email\n", format="contacts")
        assert rejected.outcome == "rejected"
        assert [p.code for p in rejected.problems] == ["missing-column"]
    finally:
        await world.close()


async def test_the_observers_and_the_publisher_see_a_campaign(tmp_path: Path) -> None:
    Scripted.reset()
    tally = observers.Tally()
    (tmp_path / "drop").mkdir()  # the local source's folder (checked at load)
    world = World.open(
        tmp_path,
        hermetic_plugins(Registers(GuideSms), tally, summary_publisher),
        sources=tomllib.loads(
            (ROOT / "examples" / "guide" / "summary_publisher.toml").read_text(encoding="utf-8")
        )["sources"],
        accounts={"sms": {"channel": "guide-sms"}},
        wallets={"BRAD": {"sms_template": "Olá {{ nome }}"}},
    )
    try:
        report = world.import_file(
            world.mailing_name(1, "cBRAD", "guidesms"),
            "nome;telefone\nAna;11988880001\nBia;11988880002\n",
        )
        assert report.campaign_id is not None
        await world.run_until_idle()
        await world.run(2)
        assert tally.deliveries["sent"] == 2
        assert tally.statuses[report.campaign_id] == "completed"
        # what `disparo run` does every minute: the summary lands on the source, once
        folder = world.config.sources["drop"].options["path"]
        folder.mkdir(parents=True, exist_ok=True)
        publishing = Publishing(world.store, world.plugins, world.config, world.clock)
        [done] = publishing.publish()
        assert done.status == "published", done.message
        assert done.path == f"resultados/{report.campaign_id}.resumo.txt"
        out = folder / done.path
        assert "sent;2" in out.read_text(encoding="utf-8").splitlines()
        assert publishing.publish() == []
    finally:
        await world.close()
        Scripted.reset()


def test_the_command_is_added_to_the_cli(run_cli: Any) -> None:
    plugins = load_plugins()
    plugins.register(commands, "e164-example")
    try:
        result = run_cli("e164", "(11) 98888-0001", "123")
    finally:
        plugins.unregister("e164-example")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == "(11) 98888-0001: +5511988880001"
    assert lines[1].startswith("123: ")


def test_a_command_reaches_the_configuration_and_the_store(run_cli: Any, tmp_path: Path) -> None:
    from engine.testing.store import write_config

    config = write_config(tmp_path, wallets={"BRAD": {"sms_template": "Oi {{ nome }}"}})
    plugins = load_plugins()
    plugins.register(commands, "sending-example")
    try:
        # read-only: with no store yet it says so and creates none
        none = run_cli("--config", str(config), "sending")
        assert none.exit_code == 2 and "does not exist" in " ".join(none.output.split())
        assert not list(tmp_path.glob("*.db"))
        csv = tmp_path / "mailing_231126_001_cBRAD_smslong.csv"
        csv.write_text("nome;telefone\nAna;(11) 99887-7665\n", encoding="utf-8")
        imported = run_cli("--config", str(config), "import", str(csv), "--today", "2026-11-23")
        assert imported.exit_code == 0, imported.output
        assert run_cli("--config", str(config), "sending").output == "nothing is sending\n"
        from engine.cli.context import AppContext

        store = AppContext(config).existing_store
        [campaign] = store.campaigns.recent()
        store.campaigns.set_status(campaign.id, "sending", actor="test")
        shown = run_cli("--config", str(config), "sending")
        assert shown.output == f"{campaign.id} {campaign.name} (sms-long)\n"
    finally:
        plugins.unregister("sending-example")
