"""The configuration is checked completely at load: every file it names (secret files, wallet
templates, key and CA files, known_hosts, a local source's folder) exists and is readable,
secret files are private; every problem is one line naming the file, the key, what is wrong
and the fix, through the real command line, never a traceback. Before it says it runs,
``disparo run`` checks the secrets in the environment and that the tracking port is free."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from engine import hookimpl
from engine.config import ConfigError, Key, load_config
from engine.config.keys import check_path
from engine.plugins import Plugins, load_plugins
from engine.plugins.source import RemoteFile, Source
from engine.testing import write_config, write_secret

SECRET = "s" * 32


def disparo(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The real command line in a fresh process (what an operator or systemd runs)."""
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,  # a hang guard only: every case here exits at once
        check=False,
    )


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, plugins=load_plugins())
    return [str(p) for p in info.value.problems]


def one_line_each(stderr: str) -> list[str]:
    lines = stderr.strip().splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), stderr
    assert "Traceback" not in stderr
    return lines


@pytest.fixture
def tracked(tmp_path: Path) -> dict[str, Any]:
    """The sections of a working configuration with [tracking] and a wallet template."""
    write_secret(tmp_path / "secrets" / "tracking.key", SECRET)
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "email.html").write_text("<p>Olá {{ nome }}</p>")
    (tmp_path / "drop").mkdir()
    return {
        "sources": {"drop": {"kind": "local", "path": "drop"}},
        "accounts": {"sms": {"channel": "sms-long", "sandbox": True}},
        "tracking": {
            "public_url": "https://t.example.com",
            "secret_file": "secrets/tracking.key",
            "listen": "127.0.0.1:0",
        },
        "wallets": {"BRAD": {"email_template": "templates/email.html"}},
    }


def test_a_working_configuration_passes_config_check(tmp_path: Path, tracked: Any) -> None:
    config = write_config(tmp_path, **tracked)
    done = disparo("--config", str(config), "config", "check", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "ok" in done.stdout and "[tracking] on 127.0.0.1:0" in done.stdout


def test_a_missing_secret_file_and_template_are_one_line_each_at_load(
    tmp_path: Path, tracked: Any
) -> None:
    (tmp_path / "secrets" / "tracking.key").unlink()
    (tmp_path / "templates" / "email.html").unlink()
    config = write_config(tmp_path, **tracked)
    for command in (("campaigns",), ("run", "--until-idle"), ("config", "check")):
        done = disparo("--config", str(config), *command, cwd=tmp_path)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        lines = one_line_each(done.stderr)
        key = tmp_path / "secrets" / "tracking.key"
        assert lines == [
            f"error: {config}: tracking.secret_file: {key} does not exist; fix the path "
            f"(relative paths start in {tmp_path}) or create the file",
            f"error: {config}: wallets.BRAD.email_template: {tmp_path / 'templates/email.html'} "
            f"does not exist; fix the path (relative paths start in {tmp_path}) or create the "
            "file",
        ]
        assert done.stdout == ""  # nothing started, no banner
    assert not (tmp_path / "disparo.db").exists()


def test_a_secret_file_others_can_read_is_refused_with_chmod_600(
    tmp_path: Path, tracked: Any
) -> None:
    key = tmp_path / "secrets" / "tracking.key"
    key.chmod(0o644)
    config = write_config(tmp_path, **tracked)
    done = disparo("--config", str(config), "run", cwd=tmp_path)
    assert done.returncode == 2
    [line] = one_line_each(done.stderr)
    assert line == (
        f"error: {config}: tracking.secret_file: {key} is open to other users (mode 0644); a "
        f"secret must be readable by its owner only: run `chmod 600 {key}`"
    )
    key.chmod(0o640)  # the group is "others" too
    assert "(mode 0640)" in problems(config)[0]
    key.chmod(0o600)
    assert load_config(config, plugins=load_plugins()).tracking is not None


def test_every_file_kind_of_key_is_checked(tmp_path: Path, tracked: Any) -> None:
    (tmp_path / "dkim.pem").write_text("-----BEGIN PRIVATE KEY-----\n")  # mode 644
    write_secret(tmp_path / "empty.key", "")
    (tmp_path / "a-folder").mkdir()
    config = write_config(
        tmp_path,
        **{
            **tracked,
            "sources": {
                "gone": {"kind": "local", "path": "nowhere"},
                "file": {"kind": "local", "path": "dkim.pem"},
                "sftp": {
                    "kind": "sftp",
                    "host": "sftp.example.com",
                    "user": "u",
                    "key_file": "missing_ed25519",
                    "known_hosts": "a-folder",
                },
                "ftps": {"kind": "ftps", "host": "ftp.example.com", "ca_file": "ca.pem"},
            },
            "accounts": {
                "mail": {
                    "channel": "email",
                    "sandbox": True,
                    "from_address": "a@example.com",
                    "dkim_selector": "s",
                    "dkim_key_file": "dkim.pem",
                    "ca_file": "ca.pem",
                    "password_file": "empty.key",
                }
            },
            "mailboxes": {
                "box": {
                    "host": "imap.example.com",
                    "user": "u",
                    "password_env": "IMAP_PASSWORD",
                    "ca_file": "ca.pem",
                }
            },
        },
    )
    found = problems(config)
    keys = [line.split(": ", 2)[1] for line in found]
    assert sorted(keys) == sorted(
        [
            "sources.gone.path",
            "sources.file.path",
            "sources.sftp.key_file",
            "sources.sftp.known_hosts",
            "sources.ftps.ca_file",
            "accounts.mail.password_file",
            "accounts.mail.ca_file",
            "accounts.mail.dkim_key_file",
            "mailboxes.box.ca_file",
        ]
    ), found
    text = "\n".join(found)
    assert f"create it (`mkdir -p {tmp_path / 'nowhere'}`)" in text
    assert f"{tmp_path / 'dkim.pem'} is not a folder" in text
    assert f"{tmp_path / 'a-folder'} is a folder; name a file here" in text
    assert f"{tmp_path / 'empty.key'} is empty; write the secret in it" in text
    assert f"run `chmod 600 {tmp_path / 'dkim.pem'}`" in text
    # each problem once: a wrong value is not reported again as missing or by a cross-check
    assert len(found) == len(set(keys))


def test_what_disparo_makes_need_not_exist(tmp_path: Path, tracked: Any) -> None:
    config = write_config(
        tmp_path,
        engine={"spool_dir": "not/yet/spool"},
        accounts={"sms": {"channel": "sms-long", "sandbox": True, "outbox": "later/sms.jsonl"}},
        sources=tracked["sources"],
    )
    loaded = load_config(config, plugins=load_plugins())
    assert loaded.engine.spool_dir == tmp_path / "not/yet/spool"
    assert not (tmp_path / "not").exists() and not (tmp_path / "later").exists()


def test_a_wallet_template_that_does_not_compile_is_the_operators_at_load(
    tmp_path: Path, tracked: Any
) -> None:
    (tmp_path / "templates" / "email.html").write_text("<p>Olá {{ nome </p>")
    tracked["wallets"]["BRAD"]["sms_template"] = "Oi {% if %}"
    config = write_config(tmp_path, **tracked)
    found = problems(config)
    assert found[0].startswith(f"{config}: wallets.BRAD.email_template: the e-mail template ")
    assert "is not a valid template" in found[0] and found[0].endswith("; fix the file")
    assert found[1].startswith(f"{config}: wallets.BRAD.sms_template: the SMS template is not")


def test_unreadable_files_are_refused_for_this_user(tmp_path: Path, tracked: Any) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads every file: permission denied cannot happen")
    template = tmp_path / "templates" / "email.html"
    template.chmod(0o000)
    try:
        message = check_path(template, "file")
    finally:
        template.chmod(0o644)
    assert message is not None and "cannot be read by this user" in message


class Folder(Source):
    """A third-party kind whose keys say what each path is."""

    name = "folder"
    writable = False
    config_keys: ClassVar[dict[str, Key]] = {
        "inbox": Key("path", help="Read from here."),
        "cache": Key("path", None, target="created", help="Made on first use."),
        "token": Key("secret", None),
    }

    def describe(self) -> str:
        return "folder"

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def list_files(self) -> list[RemoteFile]:
        return []

    def download(self, path: str, dest: Any) -> int:
        return 0


class FolderPlugin:
    @hookimpl
    def register_source_kinds(self, register: Any) -> None:
        register(Folder)


@pytest.fixture
def with_folder() -> Iterator[Plugins]:
    loaded = load_plugins()
    loaded.register(FolderPlugin(), "folder-plugin")
    try:
        yield loaded
    finally:
        loaded.unregister("folder-plugin")


def test_plugin_keys_are_checked_like_the_engines(tmp_path: Path, with_folder: Plugins) -> None:
    (tmp_path / "token").write_text("t")
    config = write_config(
        tmp_path,
        sources={"x": {"kind": "folder", "inbox": "in", "cache": "cache", "token_file": "token"}},
    )
    with pytest.raises(ConfigError) as info:
        load_config(config, plugins=with_folder)
    found = [str(p) for p in info.value.problems]
    assert [line.split(": ", 2)[1] for line in found] == [
        "sources.x.inbox",
        "sources.x.token_file",
    ]
    (tmp_path / "in").mkdir()
    (tmp_path / "token").chmod(0o600)
    loaded = load_config(config, plugins=with_folder)
    assert loaded.sources["x"].options["cache"] == tmp_path / "cache"


def test_run_checks_secrets_in_the_environment_before_it_starts(
    tmp_path: Path, tracked: Any
) -> None:
    tracked["accounts"]["sms"] = {
        "channel": "sms-long",
        "account_sid": "AC123",
        "auth_token_env": "DISPARO_TEST_TWILIO_TOKEN",
        "from_number": "+5511999990000",
    }
    config = write_config(tmp_path, **tracked)
    env = {k: v for k, v in os.environ.items() if k != "DISPARO_TEST_TWILIO_TOKEN"}
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "--config", str(config), "run"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2 and done.stdout == ""
    [line] = one_line_each(done.stderr)
    assert line.startswith(
        f"error: {config}: accounts.sms.auth_token_env: the environment variable "
        "DISPARO_TEST_TWILIO_TOKEN is not set; export it before starting disparo"
    )
    short = tmp_path / "short.key"
    write_secret(short, "too short")
    tracked["tracking"]["secret_file"] = "short.key"
    config = write_config(tmp_path, **tracked)
    done = disparo(
        "--config",
        str(config),
        "config",
        "check",
        cwd=tmp_path,
        env={"DISPARO_TEST_TWILIO_TOKEN": "x"},
    )
    assert done.returncode == 2
    [line] = one_line_each(done.stderr)
    assert "tracking.secret_file: the tracking secret is 9 bytes; it must be at least 16" in line


def test_a_busy_tracking_port_is_one_line_before_any_banner(tmp_path: Path, tracked: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        tracked["tracking"]["listen"] = f"127.0.0.1:{port}"
        config = write_config(tmp_path, **tracked)
        done = disparo("--config", str(config), "run", cwd=tmp_path)
        assert done.returncode == 2
        assert "running" not in done.stdout and done.stdout == ""
        [line] = one_line_each(done.stderr)
        assert line == (
            f"error: {config}: tracking.listen: 127.0.0.1:{port} is already in use (another "
            "disparo, or another program, listens there); stop it, or choose another port here"
        )
        serve = disparo("--config", str(config), "tracking", "serve", cwd=tmp_path)
        assert serve.returncode == 2 and "is already in use" in serve.stderr
        assert "Traceback" not in serve.stderr
        other = disparo(
            "--config",
            str(config),
            "tracking",
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
            cwd=tmp_path,
        )
        assert other.returncode == 2
        assert one_line_each(other.stderr)[0].startswith(f"error: --listen: 127.0.0.1:{port} is")
        # the TUI running the engine checks as `run` does, before the UI takes the terminal
        tui = disparo("--config", str(config), "tui", "--engine", cwd=tmp_path)
        assert tui.returncode == 2 and "Traceback" not in tui.stderr
        assert one_line_each(tui.stderr)[0].startswith(
            f"error: {config}: tracking.listen: 127.0.0.1:{port} is already in use"
        )


def test_listen_must_be_host_and_port(tmp_path: Path, tracked: Any) -> None:
    tracked["tracking"]["listen"] = "8080"
    config = write_config(tmp_path, **tracked)
    assert problems(config) == [
        f'{config}: tracking.listen: expected host:port such as "127.0.0.1:8080" or '
        '"[::1]:8080"; got "8080"'
    ]
