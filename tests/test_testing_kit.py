"""The test kit plugin authors use (``engine.testing``): hermetic plugin sets, the World on a
test clock, the scripted channel, the channel and source contract checks (on disparo's own
channels and kinds, and catching broken ones), the SMTP sink, the pytest fixtures."""

from __future__ import annotations

import json
import smtplib
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import pytest

from channels.email import EmailChannel
from channels.twilio import SmsLongChannel
from engine.addresses import Checked
from engine.config import ConfigError, Key
from engine.plugins import PluginError
from engine.plugins.channel import DeliveryInfo, Failed, Retry, SendResult, Sent
from engine.plugins.source import RemoteFile, Source, SourceError, unsafe_reason
from engine.testing import (
    ChannelContractError,
    FolderFiles,
    NotImported,
    Registers,
    Scripted,
    SourceContractError,
    World,
    builtin_plugin_names,
    check_channel,
    check_source,
    hermetic_plugins,
    make_config,
    start_smtp_sink,
)

pytest_plugins = ["pytester"]


class KitSms(Scripted):
    name = "kit-sms"
    file_word = "kitsms"


# -- plugin sets -----------------------------------------------------------------------------


def test_a_hermetic_set_is_the_builtins_and_what_the_test_names() -> None:
    plugins = hermetic_plugins(Registers(KitSms))
    names = {i.name for i in plugins.describe()}
    assert names == {*builtin_plugin_names(), "KitSms"}
    assert plugins.channels()["kit-sms"] is KitSms
    assert plugins.channel_words()["kitsms"].channel == "kit-sms"
    bare = hermetic_plugins(builtins=False)
    assert bare.describe() == []


def test_a_hermetic_set_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPARO_BLOCK_PLUGINS", "email")
    assert "email" in hermetic_plugins().channels()
    with pytest.raises(LookupError, match="no entry point named nope"):
        hermetic_plugins(entry_points=("nope",))


def test_registers_refuses_what_is_no_plugin_class() -> None:
    with pytest.raises(TypeError, match="subclasses none of the plugin bases"):
        Registers(dict)


# -- the world and the scripted channel ------------------------------------------------------


async def test_a_world_imports_a_mailing_and_sends_it_through_the_scripted_channel(
    tmp_path: Path,
) -> None:
    Scripted.reset()
    Scripted.script["+5511988880002"] = [Failed("no such number", bounce=True)]
    world = World.open(
        tmp_path,
        hermetic_plugins(Registers(KitSms)),
        accounts={"kit": {"channel": "kit-sms"}},
        wallets={"BRAD": {"sms_template": "Olá {{ nome }} de {{ cidade }}"}},
    )
    try:
        name = world.mailing_name(1, "cBRAD", "kitsms")
        assert name == "mailing_231126_001_cBRAD_kitsms.csv"
        report = world.import_file(
            name, "nome;telefone;cidade\nAna;11988880001;Recife\nBia;11988880002;Natal\n"
        )
        assert report.outcome == "imported" and report.campaign_id is not None
        await world.run_until_idle()
        sends = Scripted.sends(report.campaign_id)
        assert [(s.account, s.address, s.message.text) for s in sends] == [
            ("kit", "+5511988880001", "Olá Ana de Recife"),
            ("kit", "+5511988880002", "Olá Bia de Natal"),
        ]
        await world.run(2)
        campaign = world.campaign(report.campaign_id)
        assert campaign.status == "completed"
        assert world.statuses(report.campaign_id) == {"sent": 1, "bounced": 1}
        with pytest.raises(NotImported, match="not-mailing"):
            world.import_file("notes.txt", "x")
    finally:
        await world.close()
        Scripted.reset()


def test_make_config_checks_a_plugins_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"accounts\.kit\.colour: unknown key"):
        make_config(
            tmp_path,
            hermetic_plugins(Registers(KitSms)),
            accounts={"kit": {"channel": "kit-sms", "colour": "red"}},
        )


# -- the channel contract --------------------------------------------------------------------


async def test_disparo_channels_keep_the_contract(tmp_path: Path) -> None:
    with start_smtp_sink() as sink:
        check = await check_channel(
            EmailChannel,
            {"from_address": "aviso@empresa.com.br", "sandbox": True, "sink": sink.address},
        )
        assert isinstance(check.result, Sent)
        [message] = sink.messages
    assert message.rcpt_tos == ("ana@example.com",)
    assert message.parsed()["Subject"] == "Olá Ana"
    check = await check_channel(SmsLongChannel, {"sandbox": True}, root=tmp_path)
    assert check.result == Sent(provider_id="SANDBOX1")
    [line] = (tmp_path / "outbox" / "check.jsonl").read_text().splitlines()
    assert json.loads(line)["Body"] == "Olá Ana"


class Leaky(Scripted):
    name = "leaky"
    config_keys: ClassVar[dict[str, Key]] = {"token": Key("secret")}

    def describe(self) -> str:
        return f"leaky with {self.account.options['token'].reveal()}"


class Untyped(Scripted):
    name = "untyped"

    async def send(self, prepared: Any, delivery: DeliveryInfo) -> SendResult:
        return ("sent", None)  # type: ignore[return-value]


class Wide(Scripted):
    name = "wide"

    async def send(self, prepared: Any, delivery: DeliveryInfo) -> SendResult:
        return Retry("busy", scope="everything")  # type: ignore[arg-type]


class Picky(Scripted):
    name = "picky"

    def normalise(self, address: str) -> Checked:
        return Checked(None, "never")


async def test_the_channel_check_catches_broken_channels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEAKY_TOKEN", "s3cret-value")
    with pytest.raises(ChannelContractError, match="shows the secret `token`"):
        await check_channel(Leaky, {"token_env": "LEAKY_TOKEN"})
    with pytest.raises(ConfigError, match="secrets are never written"):
        await check_channel(Leaky, {"token": "in clear"})
    with pytest.raises(ChannelContractError, match="must answer Sent, Retry or Failed"):
        await check_channel(Untyped, {})
    with pytest.raises(ChannelContractError, match=r"Retry\.scope"):
        await check_channel(Wide, {})
    with pytest.raises(ChannelContractError, match="must answer a Checked with a value"):
        await check_channel(Picky, {})
    taken = type("Taken", (Scripted,), {"name": "taken", "file_word": "smslong"})
    with pytest.raises(PluginError, match="selects the built-in channel `sms-long`"):
        await check_channel(taken, {})


# -- the source contract ---------------------------------------------------------------------


class Shelf(Source):
    """A read-only kind: the files of a local folder, left where they are."""

    name = "shelf"
    writable = False
    config_keys: ClassVar[dict[str, Key]] = {"path": Key("path")}
    show_hidden: ClassVar[bool] = False

    def describe(self) -> str:
        return f"shelf {self.settings.options['path']}"

    def open(self) -> None:
        self.root: Path = self.settings.options["path"]

    def close(self) -> None:
        pass

    def list_files(self) -> list[RemoteFile]:
        return [
            RemoteFile(p.relative_to(self.root).as_posix(), p.stat().st_size, None)
            for p in sorted(self.root.rglob("*"))
            if p.is_file()
            and (self.show_hidden or not self.skipped(p.relative_to(self.root).as_posix()))
        ]

    def download(self, path: str, dest: BinaryIO) -> int:
        reason = unsafe_reason(path)
        if reason:
            raise SourceError("unsafe-name", f"{path!r}: {reason}")
        data = (self.root / path).read_bytes()
        dest.write(data)
        return len(data)


class ShowsHidden(Shelf):
    name = "shows-hidden"
    show_hidden = True


class PretendsToWrite(Shelf):
    name = "pretends"

    def exists(self, path: str) -> bool:
        return (self.root / path).is_file()


def shelf(tmp_path: Path, cls: type[Shelf]) -> tuple[Source, FolderFiles]:
    root = tmp_path / cls.name
    root.mkdir(parents=True)
    config = make_config(
        tmp_path,
        hermetic_plugins(Registers(cls)),
        sources={"s": {"kind": cls.name, "path": str(root)}},
    )
    return cls(config.sources["s"]), FolderFiles(root)


def test_a_read_only_kind_keeps_the_contract(tmp_path: Path) -> None:
    check_source(*shelf(tmp_path, Shelf), mtimes=False)


def test_the_source_check_catches_broken_kinds(tmp_path: Path) -> None:
    with pytest.raises(SourceContractError, match="no mtime"):
        check_source(*shelf(tmp_path / "a", Shelf))
    with pytest.raises(SourceContractError, match=r"leaves out processed/, rejected/, hidden"):
        check_source(*shelf(tmp_path / "b", ShowsHidden), mtimes=False)
    with pytest.raises(SourceContractError, match="leaves out exists"):
        check_source(*shelf(tmp_path / "c", PretendsToWrite), mtimes=False)


# -- the SMTP sink and the pytest plugin -----------------------------------------------------


def test_the_smtp_sink_keeps_what_it_is_sent() -> None:
    with start_smtp_sink() as sink, smtplib.SMTP(sink.host, sink.port, timeout=5) as client:
        client.sendmail("a@example.com", ["b@example.com"], b"Subject: oi\r\n\r\nol\xc3\xa1\r\n")
        assert [(m.mail_from, m.rcpt_tos) for m in sink.messages] == [
            ("a@example.com", ("b@example.com",))
        ]
        assert sink.messages[0].parsed()["Subject"] == "oi"


def test_the_pytest_plugin_gives_its_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest('pytest_plugins = ["engine.testing.pytest_plugin"]\n')
    pytester.makepyfile(
        """
        import smtplib

        def test_fixtures(disparo_clock, disparo_store, disparo_plugins, scripted, smtp_sink):
            assert disparo_store.clock is disparo_clock and disparo_store.inline
            assert "email" in disparo_plugins.channels() and scripted.log == []
            with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=5) as client:
                client.sendmail("a@example.com", ["b@example.com"], b"\\r\\nhi\\r\\n")
            assert len(smtp_sink.messages) == 1
        """
    )
    # in a process of its own: the suite it starts is a plugin author's, not this one
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:textual-snapshot")
    result.assert_outcomes(passed=1)
