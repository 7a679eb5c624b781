"""Start-up stays light: every ``disparo`` process (each CLI command, each SSH session's
``disparo tui``) loads all the plugins and builds the command line, so neither may import the
heavy libraries that only sending, collecting or the UI need (twilio with requests and
aiohttp, paramiko, aiosmtplib, dkimpy, aiosmtpd, Alembic, SQLAlchemy, Textual…). Before they
were made lazy, ``build_cli()`` peaked at ~98 MB and took ~0.85 s; now ~38 MB and ~0.3 s.

The check runs in a fresh interpreter, watching imports: a failure names the chain of project
modules that pulled the library in (``engine.plugins:107 > channels.twilio:27``), which is
where to move the import (inside the function that uses it, or into a private module imported
on first use, as ``channels._twilio_http``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from engine.testing import write_secret
from tests.conftest import BUILTIN_PLUGINS

#: libraries that loading the plugins and building the CLI must not import
HEAVY = (
    "twilio",
    "requests",
    "aiohttp",
    "paramiko",
    "aiosmtplib",
    "dkim",
    "aiosmtpd",
    "alembic",
    "sqlalchemy",
    "prometheus_client",
    "textual",
)

PROBE = r"""
import json, sys

HEAVY = set(sys.argv[2].split(","))
PROJECT = ("engine", "channels", "plugins", "tui")
first = {}


def chain():
    # the project frames on the stack, outermost first: who imported what
    frames, frame = [], sys._getframe(2)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.split(".")[0] in PROJECT or module == "__main__":
            frames.append(f"{module}:{frame.f_lineno}")
        frame = frame.f_back
    return " > ".join(reversed(frames)) or "?"


class Watch:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in HEAVY and top not in first:
            first[top] = chain()
        return None


sys.meta_path.insert(0, Watch())
step = "start"
try:
    step = "load_plugins()"
    from engine.plugins import load_plugins

    plugins = load_plugins()
    step = "build_cli()"
    from engine.cli import build_cli

    cli = build_cli()
    commands = (
        ["--help"],
        ["plugins"],
        ["--config", sys.argv[3], "check-name", "mailing_231126_001.csv"],
    )
    for args in commands:
        step = "disparo " + " ".join(args)
        try:
            cli.main(args=args, prog_name="disparo", standalone_mode=False)
        except SystemExit:
            pass
    step = "load_config()"
    from pathlib import Path

    from engine.config import load_config

    config = load_config(Path(sys.argv[3]), plugins=plugins)
    step = "channel and source classes"
    for account in config.accounts.values():
        plugins.channels()[account.channel].validate_account(account)
    for source in config.sources.values():
        plugins.source_kinds()[source.kind](source).describe()
    result = {
        "plugins": sorted(i.name for i in plugins.describe()),
        "channels": sorted(plugins.channels()),
        "imported": {k: v for k, v in first.items() if k in HEAVY},
    }
except BaseException as exc:
    result = {"error": f"{step}: {type(exc).__name__}: {exc}"}
with open(sys.argv[1], "w", encoding="utf-8") as out:
    json.dump(result, out)
"""

CONFIG = """\
[engine]
spool_dir = "spool"

[accounts.mail]
channel = "email"
sandbox = true
from_address = "aviso@empresa.com.br"
dkim_selector = "s1"
dkim_key_file = "dkim.pem"

[accounts.sms]
channel = "sms-long"
sandbox = true
from_number = "+5511900000000"

[accounts.wa]
channel = "whatsapp-shared"
account_sid = "AC00000000000000000000000000000000"
auth_token_env = "DISPARO_TEST_TWILIO_TOKEN"
from_numbers = ["+5511900000001", "+5511900000002"]

[sources.drop]
kind = "sftp"
host = "sftp.empresa.com.br"
user = "disparo"
password_env = "DISPARO_TEST_SFTP_PASSWORD"
host_key_fingerprint = "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"
"""


def probe(tmp_path: Path) -> dict[str, Any]:
    write_secret(tmp_path / "dkim.pem", "not read at start\n")
    config = tmp_path / "disparo.toml"
    config.write_text(CONFIG, encoding="utf-8")
    result = tmp_path / "result.json"
    # disparo's own plugins, all of them (not the installed third-party ones)
    env = {k: v for k, v in os.environ.items() if k != "DISPARO_BLOCK_PLUGINS"}
    env["DISPARO_PLUGINS"] = ",".join(BUILTIN_PLUGINS)
    env |= {"DISPARO_TEST_TWILIO_TOKEN": "x" * 32, "DISPARO_TEST_SFTP_PASSWORD": "secret"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(result), ",".join(HEAVY), str(config)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0 and result.exists(), done.stdout + done.stderr
    data: dict[str, Any] = json.loads(result.read_text(encoding="utf-8"))
    assert "error" not in data, data["error"]
    return data


def test_loading_plugins_and_building_the_cli_imports_no_heavy_library(tmp_path: Path) -> None:
    data = probe(tmp_path)
    # the check means something only when the plugins that need those libraries were loaded
    assert {"email", "sftp", "sink", "twilio", "tui"} <= set(data["plugins"])
    assert {"email", "sms-long", "whatsapp-shared"} <= set(data["channels"])
    imported: dict[str, str] = data["imported"]
    assert not imported, "\n".join(
        f"start-up imported {lib}, via {via}: import it where it is used (inside the function, "
        "or a private module imported on first use)"
        for lib, via in sorted(imported.items())
    )


#: libraries a command that only reads the store (``campaigns``, ``accounts``, ``campaign
#: show``) must not import: the UI, the transports, the migrations, Jinja2, the address
#: checkers (a configuration without sender addresses or template files, which are checked
#: at every load), the PostgreSQL dialect on a SQLite store, and rich's progress bars (only
#: `import` and `groups sync` show one) (issue 16, goal 7)
NOT_FOR_READING = (
    "rich.progress",
    "textual",
    "aiohttp",
    "twilio",
    "paramiko",
    "asyncssh",
    "aiosmtplib",
    "alembic",
    "jinja2",
    "phonenumbers",
    "email_validator",
    "sqlalchemy.dialects.postgresql",
)

#: ...and these, which a command whose queries ``engine.reads`` runs on a store at head
#: (``campaigns``, ``accounts``, ``campaign show``) does not import at all: the store and
#: SQLAlchemy, nor psycopg on PostgreSQL (issue 16, goal 7)
WITHOUT_SQLALCHEMY = ("sqlalchemy", "engine.store", "psycopg")

READER = r"""
import json, sys

from engine.cli import main

try:
    main(sys.argv[2:])
except SystemExit as exc:
    code = exc.code
else:
    code = 0
watched = sys.argv[1].split(",")
found = sorted(m for m in watched if m in sys.modules)
print(json.dumps({"code": code, "imported": found}))
"""


def test_commands_that_read_the_store_import_no_sender_ui_or_other_dialect(
    tmp_path: Path, db_url: str
) -> None:
    # a database at head, with no campaign (the commands' own path, not their rows'); on
    # PostgreSQL through libpq itself, without psycopg (engine.libpq)
    config = tmp_path / "disparo.toml"
    config.write_text(f'[engine]\ndatabase_url = "{db_url}"\n', "utf-8")
    env = {k: v for k, v in os.environ.items() if k != "DISPARO_BLOCK_PLUGINS"}
    env["DISPARO_PLUGINS"] = ",".join(BUILTIN_PLUGINS)
    upgrade = subprocess.run(
        [sys.executable, "-m", "engine.cli", "--config", str(config), "db", "upgrade"],
        capture_output=True, text=True, check=False, cwd=tmp_path, env=env, timeout=120,
    )  # fmt: skip
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    for command, extra, code in (
        (["campaigns", "--json"], WITHOUT_SQLALCHEMY, 0),
        (["campaigns"], WITHOUT_SQLALCHEMY, 0),
        (["accounts"], WITHOUT_SQLALCHEMY, 0),
        (["campaign", "show", "1"], WITHOUT_SQLALCHEMY, 1),  # there is none: it says so
    ):
        watched = ",".join((*NOT_FOR_READING, *extra))
        done = subprocess.run(
            [sys.executable, "-c", READER, watched, "--config", str(config), *command],
            capture_output=True, text=True, check=False, cwd=tmp_path, env=env, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["code"] == code, done.stdout + done.stderr
        assert result["imported"] == [], (
            f"`disparo {' '.join(command)}` imported {result['imported']}: import them where "
            "they are used (inside the function, or a private module imported on first use)"
        )


def test_the_table_of_builtin_commands_names_every_module_s_commands() -> None:
    # the root group imports a command's module when the command runs (issue 16, goal 7):
    # BUILTIN_COMMANDS must say, for each built-in command, the modules that define it
    import importlib

    from engine.cli import BUILTIN_COMMANDS

    modules = sorted({m for ms in BUILTIN_COMMANDS.values() for m in ms})
    defined: dict[str, set[str]] = {}
    for name in modules:
        for command in importlib.import_module(f"engine.cli.{name}").COMMANDS:
            defined.setdefault(str(command.name), set()).add(name)
    assert set(defined) == set(BUILTIN_COMMANDS)
    for command, where in defined.items():
        assert where <= set(BUILTIN_COMMANDS[command]), command
    # compose's `campaign new` / `campaign start` join the group campaigns defines
    assert BUILTIN_COMMANDS["campaign"] == ("campaigns", "compose")
