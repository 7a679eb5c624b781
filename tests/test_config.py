"""disparo.toml: discovery, validation messages, secrets by reference (F5), the starter file."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import pytest

from engine import hookimpl
from engine.addresses import Checked
from engine.config import (
    Config,
    ConfigError,
    Key,
    SecretError,
    SecretRef,
    find_config,
    load_config,
    parse_duration,
    write_starter,
)
from engine.plugins import Plugins, load_plugins
from engine.plugins.channel import Channel, DeliveryInfo, SendResult, Sent
from engine.plugins.source import RemoteFile, Source


class FolderKind(Source):
    """A throwaway source kind with its own keys."""

    name = "folder"
    writable = False
    config_keys: ClassVar[dict[str, Key]] = {
        "path": Key("path"),
        "password": Key("secret", None),
    }

    def describe(self) -> str:
        return "folder"

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def list_files(self) -> list[RemoteFile]:
        return []

    def download(self, path: str, dest: BinaryIO) -> int:
        return 0


class FakeChannel(Channel):
    name = "fake"
    address_kind = "email"
    config_keys: ClassVar[dict[str, Key]] = {"from_address": Key("str")}

    def normalise(self, address: str) -> Checked:
        return Checked(address, None)

    async def send(self, prepared: Any, delivery: DeliveryInfo) -> SendResult:
        return Sent()


class ThrowawayPlugin:
    @hookimpl
    def register_source_kinds(self, register: Any) -> None:
        register(FolderKind)

    @hookimpl
    def register_channels(self, register: Any) -> None:
        register(FakeChannel)


@pytest.fixture
def plugins() -> Iterator[Plugins]:
    loaded = load_plugins()
    loaded.register(ThrowawayPlugin(), "throwaway")
    try:
        yield loaded
    finally:
        loaded.unregister("throwaway")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "disparo.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, plugins: Plugins) -> Config:
    return load_config(write(tmp_path, text), plugins=plugins)


def problems(tmp_path: Path, text: str, plugins: Plugins) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, plugins)
    return [str(p) for p in info.value.problems]


def test_defaults_without_a_file(tmp_path: Path) -> None:
    config = load_config(None)
    assert str(config.tz) == "America/Sao_Paulo"
    assert config.engine.database_url == f"sqlite:///{(tmp_path / 'disparo.db').as_posix()}"
    assert config.sources == {} and config.accounts == {}


def test_discovery_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert find_config() is None
    here = write(tmp_path, "")
    assert find_config() == here
    monkeypatch.setenv("DISPARO_CONFIG", "/elsewhere/x.toml")
    assert find_config() == Path("/elsewhere/x.toml")
    assert find_config(Path("explicit.toml")) == Path("explicit.toml")


def test_full_file(tmp_path: Path, plugins: Plugins) -> None:
    # every file and folder the configuration names exists (checked at load)
    (tmp_path / "drop").mkdir()
    (tmp_path / "triplets").mkdir()
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "brad.html").write_text("<p>Olá {{ nome }}</p>")
    config = load(
        tmp_path,
        f"""
[engine]
time_zone = "America/Manaus"
database_url = "sqlite:///data/x.db"

[sources.drop]
kind = "folder"
path = "drop"
every = "5m"
password_env = "DROP_PASSWORD"

[sources.hourly]
kind = "folder"
path = "{tmp_path / "triplets"}"
cron = "0 * * * *"

[accounts.avisos]
channel = "fake"
from_address = "aviso@example.com"
rate = 2.5

[wallets.BRAD]
default_sender = "avisos"
email_subject = "Olá"
email_template = "templates/brad.html"
""",
        plugins,
    )
    assert str(config.tz) == "America/Manaus"
    assert config.engine.database_url == f"sqlite:///{(tmp_path / 'data/x.db').as_posix()}"
    drop = config.sources["drop"]
    assert drop.kind == "folder" and drop.format == "mailing"
    assert drop.schedule.every == timedelta(minutes=5) and drop.schedule.cron is None
    assert drop.options["path"] == tmp_path / "drop"
    assert drop.options["password"] == SecretRef("password", env="DROP_PASSWORD")
    assert drop.stable_listings == 2 and drop.processed_dir == "processed"
    assert config.sources["hourly"].schedule.cron == "0 * * * *"
    assert config.sources["hourly"].schedule.describe() == "cron 0 * * * *"
    assert drop.schedule.describe() == "every 5 min"
    acc = config.accounts["avisos"]
    assert acc.rate == 2.5 and acc.burst == 2 and acc.options["from_address"] == "aviso@example.com"
    assert config.wallet("BRAD").email_template == tmp_path / "templates/brad.html"
    assert config.default_subject("BRAD") == "Olá"
    assert config.default_subject("OTHER") is None


def test_errors_name_file_key_and_expectation(tmp_path: Path, plugins: Plugins) -> None:
    found = problems(
        tmp_path,
        """
[engine]
time_zone = "Mars/Olympus"
role = "god"
spool = "x"

[sources.drop]
kind = "folder"
every = "soon"
stable_listings = 1

[sources.bad]
kind = "fpt"

[accounts.a]
channel = "fake"
rate = "fast"

[wallets.BRAD]
default_sender = "nobody"

[extra]
x = 1
""",
        plugins,
    )
    file = str(tmp_path / "disparo.toml")
    joined = "\n".join(found)
    assert all(p.startswith(file + ":") for p in found)
    assert "engine.time_zone: expected an IANA time zone" in joined
    assert "engine.role: expected one of viewer, operator, admin; got `god`" in joined
    assert "engine.spool: unknown key; did you mean `spool_dir`?" in joined
    assert "sources.drop.every: expected a duration" in joined
    assert "sources.drop.stable_listings: expected at least 2" in joined
    assert "sources.drop.path: missing: `path` is required" in joined
    assert "sources.bad.kind: expected one of folder" in joined
    assert 'accounts.a.rate: expected a number; got "fast"' in joined
    assert "accounts.a.from_address: missing" in joined
    assert "wallets.BRAD.default_sender: names the account `nobody`" in joined
    assert "extra: unknown section" in joined


def test_f5_secrets_in_clear_are_refused(tmp_path: Path, plugins: Plugins) -> None:
    found = problems(
        tmp_path,
        """
[engine]
database_url = "postgresql://disparo:hunter2@db/disparo"

[sources.drop]
kind = "folder"
path = "drop"
password = "hunter2"
token = "abc"
""",
        plugins,
    )
    joined = "\n".join(found)
    assert "sources.drop.password: secrets are never written" in joined
    assert 'password_env = "ENV_VAR_NAME"' in joined
    assert "sources.drop.token: secrets are never written" in joined
    assert "engine.database_url: the URL carries a password" in joined
    assert "hunter2" not in joined and "abc" not in joined


def test_secret_refs_read_env_or_file_and_never_show_the_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_SECRET", "s3cr3t")
    ref = SecretRef("password", env="MY_SECRET")
    assert ref.reveal() == "s3cr3t"
    assert "s3cr3t" not in repr(ref) and "MY_SECRET" in repr(ref)
    secret_file = tmp_path / "pw"
    secret_file.write_text("from-file\n")
    assert SecretRef("password", file=secret_file).reveal() == "from-file"
    with pytest.raises(SecretError, match="MISSING_VAR"):
        SecretRef("password", env="MISSING_VAR").reveal()
    with pytest.raises(SecretError, match="cannot be read"):
        SecretRef("password", file=tmp_path / "nope").reveal()


def test_both_env_and_file_is_an_error(tmp_path: Path, plugins: Plugins) -> None:
    found = problems(
        tmp_path,
        '[sources.d]\nkind = "folder"\npath = "x"\npassword_env = "A"\npassword_file = "b"\n',
        plugins,
    )
    assert any("not both" in p for p in found)


def test_invalid_toml_and_missing_file(tmp_path: Path, plugins: Plugins) -> None:
    assert any("is not valid TOML" in p for p in problems(tmp_path, "[engine\n", plugins))
    with pytest.raises(ConfigError, match="disparo init"):
        load_config(tmp_path / "missing.toml", plugins=plugins)


def test_every_and_cron_together(tmp_path: Path, plugins: Plugins) -> None:
    found = problems(
        tmp_path,
        '[sources.d]\nkind = "folder"\npath = "x"\nevery = "1m"\ncron = "0 * * * *"\n',
        plugins,
    )
    assert any("not both" in p for p in found)
    found = problems(tmp_path, '[sources.d]\nkind = "folder"\npath = "x"\ncron = "nope"\n', plugins)
    assert any("sources.d.cron: expected a cron expression" in p for p in found)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2m", 120),
        ("90s", 90),
        ("1h30m", 5400),
        ("3d", 259200),
        ("1d12h", 129600),
        (45, 45),
        ("0s", None),
        ("x", None),
        (True, None),
    ],
)
def test_parse_duration(text: object, seconds: int | None) -> None:
    assert parse_duration("0s", zero=True) == parse_duration(0, zero=True) == timedelta(0)
    parsed = parse_duration(text)
    assert (parsed.total_seconds() if parsed else None) == seconds


def test_starter_config_is_commented_valid_and_makes_its_folders(tmp_path: Path) -> None:
    made = write_starter(tmp_path / "ws")
    text = (tmp_path / "ws" / "disparo.toml").read_text()
    assert text.startswith("# disparo configuration")
    assert tomllib.loads(text)["engine"]["time_zone"] == "America/Sao_Paulo"
    config = load_config(tmp_path / "ws" / "disparo.toml")
    assert config.engine.spool_dir == tmp_path / "ws" / "spool"
    for folder in ("spool", "templates"):
        assert (tmp_path / "ws" / folder).is_dir()
    assert (tmp_path / "ws" / "templates" / "email.html") in made
    # only sandbox accounts (nothing reaches people from a starter config), one per channel
    assert {a.channel for a in config.accounts.values()} == {
        "email",
        "sms-long",
        "sms-short",
        "whatsapp-exclusive",
        "whatsapp-shared",
        "whatsapp-prospect",
    }
    assert all(a.sandbox for a in config.accounts.values())
    # the tracking secret is generated for the workspace, by reference, readable by its owner
    key = tmp_path / "ws" / "secrets" / "tracking.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert config.tracking is not None and len(config.tracking.secret.reveal()) >= 32
    assert config.tracking.secret.reveal() not in text
    secret = key.read_text()
    with pytest.raises(FileExistsError):
        write_starter(tmp_path / "ws")
    write_starter(tmp_path / "ws", force=True)
    assert key.read_text() == secret  # a forced rewrite keeps the secret (links stay valid)
    other = write_starter(tmp_path / "other")
    assert (tmp_path / "other" / "secrets" / "tracking.key").read_text() != secret
    assert tmp_path / "other" / "secrets" / "tracking.key" in other
