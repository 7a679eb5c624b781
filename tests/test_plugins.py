"""The plugin core: one door for built-in and third-party plugins, registries, observers."""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO

import click
import pytest
from aiohttp import web

from engine import hookimpl, hookspecs
from engine.addresses import Checked
from engine.events import CampaignEvent, DeliveryEvent
from engine.mailing_names import check_name
from engine.plugins import PluginError, load_plugins, reset_plugins
from engine.plugins.channel import Channel, DeliveryInfo, Failed, SendResult, Sent
from engine.plugins.format import FileRejected, Format, ImportSpec, Verdict
from engine.plugins.publisher import Publication, Publisher
from engine.plugins.source import RemoteFile, Source
from engine.plugins.webhook import Route, Webhooks
from engine.testing import Registers, Scripted, World, hermetic_plugins

TESTS = Path(__file__).parent
NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


class EchoFormat(Format):
    """A throwaway file format."""

    name = "echo"

    def inspect(self, path: str, listing: set[str]) -> Verdict:
        return Verdict("ignore", "not-mailing")

    def prepare(self, path: str, spool: Path, companions: Mapping[str, Path]) -> ImportSpec:
        raise FileRejected([])


class EchoChannel(Channel):
    name = "echo-channel"
    address_kind = "phone"
    file_word = "eco"

    def normalise(self, address: str) -> Checked:
        return Checked(address, None)

    async def send(self, prepared: Any, delivery: DeliveryInfo) -> SendResult:
        return Sent()


class EchoKind(Source):
    name = "echo-kind"
    writable = False

    def describe(self) -> str:
        return "echo"

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def list_files(self) -> list[RemoteFile]:
        return []

    def download(self, path: str, dest: BinaryIO) -> int:
        return 0


class EchoPublisher(Publisher):
    name = "echo-results"

    def due(self, now: datetime) -> Iterable[Publication]:
        return ()

    def write(self, publication: Publication, out: IO[bytes]) -> None:
        pass


class EchoWebhooks(Webhooks):
    """Answers ``POST /echo/hook`` with what it was sent, and applies nothing."""

    name = "echo-hooks"

    def routes(self) -> Sequence[Route]:
        return (Route("POST", "/echo/hook", self.hook),)

    async def hook(self, request: web.Request) -> web.StreamResponse:
        self.context.count("echo", "ok")
        return web.Response(text=await request.text())


class Throwaway:
    """A throwaway plugin implementing every hook."""

    def __init__(self) -> None:
        self.deliveries: list[DeliveryEvent] = []
        self.campaigns: list[CampaignEvent] = []

    @hookimpl
    def register_formats(self, register: Any) -> None:
        register(EchoFormat)

    @hookimpl
    def register_channels(self, register: Any) -> None:
        register(EchoChannel)

    @hookimpl
    def register_source_kinds(self, register: Any) -> None:
        register(EchoKind)

    @hookimpl
    def register_publishers(self, register: Any) -> None:
        register(EchoPublisher)

    @hookimpl
    def register_webhooks(self, register: Any) -> None:
        register(EchoWebhooks)

    @hookimpl
    def register_commands(self, cli: click.Group) -> None:
        @cli.command("echo")
        @click.argument("word")
        def echo(word: str) -> None:
            """Say a word back."""
            click.echo(f"echo: {word}")

    @hookimpl
    async def delivery_event(self, event: DeliveryEvent) -> None:
        self.deliveries.append(event)

    @hookimpl
    def campaign_event(self, event: CampaignEvent) -> None:
        self.campaigns.append(event)


@pytest.fixture
def throwaway() -> Iterator[Throwaway]:
    plugin = Throwaway()
    plugins = load_plugins()
    plugins.register(plugin, "throwaway")
    try:
        yield plugin
    finally:
        plugins.unregister("throwaway")


def test_registries_see_a_throwaway_plugin(throwaway: Throwaway) -> None:
    plugins = load_plugins()
    assert plugins.formats()["echo"] is EchoFormat
    assert plugins.channels()["echo-channel"] is EchoChannel
    assert plugins.source_kinds()["echo-kind"] is EchoKind
    assert plugins.publishers()["echo-results"] is EchoPublisher
    assert plugins.webhooks()["echo-hooks"] is EchoWebhooks
    info = next(i for i in plugins.describe() if i.name == "throwaway")
    assert {(r.registry, r.name) for r in info.registered} == {
        ("format", "echo"),
        ("channel", "echo-channel"),
        ("source kind", "echo-kind"),
        ("publisher", "echo-results"),
        ("webhooks", "echo-hooks"),
    }
    assert "register_formats" in info.hooks and "delivery_event" in info.hooks


def test_unregistered_plugin_is_gone(throwaway: Throwaway) -> None:
    plugins = load_plugins()
    plugins.unregister("throwaway")
    assert "echo" not in plugins.formats()
    plugins.register(throwaway, "throwaway")  # the fixture unregisters it again


def test_disparo_plugins_lists_it_and_its_command_runs(throwaway: Throwaway, run_cli: Any) -> None:
    result = run_cli("plugins", "--json")
    assert result.exit_code == 0
    listed = {p["name"]: p for p in json.loads(result.output)}
    assert {"registry": "format", "name": "echo"} in listed["throwaway"]["registers"]
    human = run_cli("plugins")
    assert "throwaway" in human.output and "echo-channel" in human.output
    assert run_cli("echo", "olá").output == "echo: olá\n"


async def test_observers_get_events_and_a_failing_one_does_not_stop_others(
    throwaway: Throwaway, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        @hookimpl
        def delivery_event(self, event: DeliveryEvent) -> None:
            raise RuntimeError("boom")

    plugins = load_plugins()
    plugins.register(Broken(), "broken")
    try:
        event = DeliveryEvent("sent", NOW, 1, 2, "email", "a@b.c", {"message_id": "<x>"})
        await plugins.delivery_event(event)
        await plugins.campaign_event(CampaignEvent("status", NOW, 1, "sending", "scheduled"))
    finally:
        plugins.unregister("broken")
    assert throwaway.deliveries == [event]
    assert throwaway.campaigns[0].status == "sending"
    assert "broken failed in delivery_event" in caplog.text
    with pytest.raises(TypeError):
        event.detail["x"] = 1  # type: ignore[index]  # events are frozen


def test_duplicate_and_invalid_names_are_refused(throwaway: Throwaway) -> None:
    class Twin:
        @hookimpl
        def register_formats(self, register: Any) -> None:
            register(EchoFormat)

    class Nameless:
        @hookimpl
        def register_channels(self, register: Any) -> None:
            register(type("Bad", (EchoChannel,), {"name": "Has Spaces"}))

    plugins = load_plugins()
    with pytest.raises(PluginError, match="format `echo` is registered by both"):
        plugins.register(Twin(), "twin")
    with pytest.raises(PluginError, match="lower-case `name`"):
        plugins.register(Nameless(), "nameless")
    assert plugins.formats()["echo"] is EchoFormat  # the failed ones left nothing behind


def registering(hook: str, cls: object) -> object:
    """A plugin object whose ``hook`` registers ``cls``."""

    class One:
        pass

    def impl(self: object, register: Any) -> None:
        register(cls)

    impl.__name__ = hook
    setattr(One, hook, hookimpl(impl))
    return One()


@pytest.mark.parametrize(
    ("hook", "what", "base"),
    [
        ("register_channels", "channel", "Channel"),
        ("register_source_kinds", "source kind", "Source"),
        ("register_formats", "format", "Format"),
        ("register_publishers", "publisher", "Publisher"),
        ("register_webhooks", "webhooks", "Webhooks"),
    ],
)
def test_registration_is_typed(hook: str, what: str, base: str) -> None:
    plugins = load_plugins()
    plain = type("Plain", (), {"name": "plain"})
    with pytest.raises(PluginError, match=f"a {what} must be a subclass of .*{base}"):
        plugins.register(registering(hook, plain), "plain")
    assert "plain" not in plugins.pm.list_name_plugin()


def test_an_unfinished_class_is_refused_at_load() -> None:
    class Half(Channel):
        name = "half"
        address_kind = "phone"

    with pytest.raises(PluginError, match="does not implement normalise, send"):
        load_plugins().register(registering("register_channels", Half), "half")


def test_a_writable_source_kind_must_implement_moves_and_uploads() -> None:
    class Leaky(EchoKind):
        name = "leaky"
        writable = True

    with pytest.raises(PluginError, match="writable but does not implement move, upload, exists"):
        load_plugins().register(registering("register_source_kinds", Leaky), "leaky")


@pytest.mark.parametrize(
    ("word", "why"),
    [
        ("smslong", "selects the built-in channel `sms-long`"),
        ("h", "a word is 3–30"),
        ("limpartag", "is a flag of the grammar"),
        ("q15020", "reads as a parameter"),
        ("Tele", "a word is 3–30"),
        ("eco", "already uses it"),
    ],
)
def test_a_channel_word_must_be_free(throwaway: Throwaway, word: str, why: str) -> None:
    taken = type("Taken", (EchoChannel,), {"name": "taken", "file_word": word})
    with pytest.raises(PluginError, match=f"the file-name word `_{word}`: .*{why}") as refused:
        load_plugins().register(registering("register_channels", taken), "taken")
    assert "choose another `file_word`" in str(refused.value)


def test_a_plugin_channel_word_selects_it_in_file_names(throwaway: Throwaway) -> None:
    words = load_plugins().channel_words()
    assert words["eco"].channel == "echo-channel" and words["smslong"].channel == "sms-long"
    check = check_name("BRAD/mailing_231126_001_eco_q15020.csv", words=words)
    assert check.ok and check.mailing is not None
    assert check.mailing.channel == "echo-channel"
    # an e-mail parameter on a phone channel is still refused (N17)
    assert not check_name("BRAD/mailing_231126_001_eco_teOla.csv", words=words).ok
    # without the plugin's words the piece is unknown (N7)
    plain = check_name("BRAD/mailing_231126_001_eco.csv")
    assert [e.code for e in plain.errors] == ["unknown-parameter"]


def test_misspelled_hook_fails_at_start() -> None:
    class Typo:
        @hookimpl
        def register_chanels(self, register: Any) -> None: ...

    plugins = load_plugins()
    with pytest.raises(Exception, match="register_chanels"):
        plugins.register(Typo(), "typo")


def test_environment_allow_and_block_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import BUILTIN_PLUGINS

    monkeypatch.setenv("DISPARO_PLUGINS", "")
    reset_plugins()
    assert load_plugins().describe() == []
    monkeypatch.delenv("DISPARO_PLUGINS")
    monkeypatch.setenv("DISPARO_BLOCK_PLUGINS", ",".join(BUILTIN_PLUGINS))
    reset_plugins()
    names = {i.name for i in load_plugins().describe()}
    assert names.isdisjoint(BUILTIN_PLUGINS)


def test_builtins_come_through_the_entry_point_group() -> None:
    from importlib import metadata

    from tests.conftest import BUILTIN_PLUGINS

    plugins = load_plugins()
    described = {i.name: i for i in plugins.describe()}
    for name in BUILTIN_PLUGINS:
        assert described[name].distribution == "disparo"
    eps = {ep.name for ep in metadata.entry_points(group="disparo")}
    assert set(BUILTIN_PLUGINS) <= eps


def test_every_hookspec_is_documented_and_has_a_test() -> None:
    specs = [
        name
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(fn, "disparo_spec")
    ]
    assert specs, "no hookspecs found"
    tested = "\n".join(p.read_text(encoding="utf-8") for p in TESTS.rglob("test_*.py"))
    for name in specs:
        assert (getattr(hookspecs, name).__doc__ or "").strip(), f"{name} has no docstring"
        assert f"def {name}(" in tested, f"hook {name} has no test implementing it"


class PluginMail(Scripted):
    """A plugin channel that sends to e-mail addresses (an e-mail provider's HTTP API)."""

    name = "plugin-mail"
    address_kind = "email"
    file_word = "pluginmail"


async def test_a_plugin_email_channel_honours_email_suppressions(tmp_path: Path) -> None:
    Scripted.reset()
    Scripted.script["gone@example.com"] = [Failed("no such mailbox", bounce=True)]
    (tmp_path / "body.html").write_text("<p>Olá {{ nome }}</p>")
    world = World.open(
        tmp_path,
        hermetic_plugins(Registers(PluginMail)),
        accounts={"m": {"channel": "plugin-mail"}},
        wallets={"BRAD": {"email_subject": "Oi", "email_template": "body.html"}},
    )
    try:
        first = world.import_file(
            world.mailing_name(1, "cBRAD", "pluginmail"),
            "nome;email\nG;gone@example.com\nA;ana@example.com\n",
        )
        assert first.outcome == "imported"
        world.store.suppressions.add("email", "ana@example.com", origin="manual", actor="test")
        await world.run_until_idle()
        again = world.import_file(
            world.mailing_name(2, "cBRAD", "pluginmail"), "nome;email\nG;gone@example.com\n"
        )
        # the manual suppression stops the send, the hard bounce suppresses the address
        assert [s.address for s in Scripted.sends()] == ["gone@example.com"]
        assert again.suppressed == 1
    finally:
        await world.close()
        Scripted.reset()
