"""docs/configuration.md is generated from the key tables the reader checks against (the
engine's sections and every built-in plugin's ``config_keys``): the committed file is what
the generator writes now, and every key says what it does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from engine.config import (
    ACCOUNT_KEYS,
    ENGINE_KEYS,
    MAILBOX_KEYS,
    SOURCE_KEYS,
    TEMPLATE_KEYS,
    TRACKING_KEYS,
    WALLET_KEYS,
    Key,
)
from engine.config.reference import REGENERATE, render_reference
from engine.plugins import builtin_plugins

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "configuration.md"


def test_the_committed_reference_is_what_the_generator_writes() -> None:
    assert REFERENCE.read_text(encoding="utf-8") == render_reference(builtin_plugins()), (
        f"docs/configuration.md is out of date: run `{REGENERATE}` and commit it"
    )


def test_the_generator_checks_and_writes(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "engine.config.reference", *args],
            capture_output=True,
            text=True,
            timeout=120,  # a hang guard only
            check=False,
        )

    assert run("--check", str(REFERENCE)).returncode == 0
    stale = tmp_path / "configuration.md"
    stale.write_text("# old\n")
    checked = run("--check", str(stale))
    assert checked.returncode == 1 and "out of date" in checked.stderr
    assert run(str(stale)).returncode == 0
    assert stale.read_text(encoding="utf-8") == REFERENCE.read_text(encoding="utf-8")


def test_disparo_config_reference_prints_it(run_cli: Any) -> None:
    # the tests load disparo's own plugins only: the same reference
    result = run_cli("config", "reference")
    assert result.exit_code == 0
    assert result.output == REFERENCE.read_text(encoding="utf-8")


def tables() -> dict[str, dict[str, Key]]:
    plugins = builtin_plugins()
    found = {
        "engine": ENGINE_KEYS,
        "sources": SOURCE_KEYS,
        "accounts": ACCOUNT_KEYS,
        "tracking": TRACKING_KEYS,
        "mailboxes": MAILBOX_KEYS,
        "templates": TEMPLATE_KEYS,
        "wallets": WALLET_KEYS,
    }
    for registry in (plugins.source_kinds(), plugins.channels(), plugins.formats()):
        for name, cls in registry.items():
            found[name] = dict(getattr(cls, "config_keys", {}))
    return found


def test_every_key_says_what_it_does() -> None:
    missing = [
        f"{table}.{name}"
        for table, keys in tables().items()
        for name, key in keys.items()
        if not key.help.strip()
    ]
    assert missing == []


def test_the_keys_once_found_only_in_the_code_are_documented() -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    sections = text.split("\n## ")
    sources = next(s for s in sections if s.startswith("[sources.NAME]"))
    for kind in ("ftp", "sftp"):
        part = sources.split(f'### kind = "{kind}"')[1].split("###")[0]
        for key in ("port", "remote_dir", "timeout"):
            assert f"| `{key}` |" in part, (kind, key)
    accounts = next(s for s in sections if s.startswith("[accounts.NAME]"))
    email = accounts.split('### channel = "email"')[1].split("###")[0]
    for key in ("port", "tls", "ca_file"):
        assert f"| `{key}` |" in email, key
    mailboxes = next(s for s in sections if s.startswith("[mailboxes.NAME]"))
    for key in ("port", "ca_file", "allow_private"):
        assert f"| `{key}` |" in mailboxes, key
    assert "| `secret_env` / `secret_file` |" in text
    assert "| `spool_dir` | path: made by disparo when it needs it" in text
    assert "| `key_file` | path: an existing file disparo can read and nobody else" in text
