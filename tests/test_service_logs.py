"""Logs a service owner can use: JSON lines (``--log-format json`` or
``DISPARO_LOG_FORMAT=json``) with the time's UTC offset, the level, the logger, the message and
the record's ``extra`` fields; text lines with the offset too; imports and rejections logged
by the collector with their rule; output never wrapped when it is not a terminal."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine.cli.context import UNWRAPPED, make_console
from engine.config import load_config
from engine.plugins import load_plugins
from engine.service import JsonFormatter, ZonedFormatter, configure_logging
from tests.helpers import load, name, write_config

UNTIL_IDLE = ("--until-idle", "--settle", "0.05")
CSV = "nome;telefone\nAna;11988880001\nBia;11988880002\nCarla;\n"


def record(message: str = "hello %s", *args: Any, **extra: Any) -> logging.LogRecord:
    made = logging.LogRecord("engine.x", logging.WARNING, __file__, 1, message, args, None)
    made.created = datetime(2026, 11, 23, 12, 0, 5, 123000, tzinfo=UTC).timestamp()
    made.__dict__.update(extra)
    return made


def test_json_lines_carry_time_with_offset_level_logger_message_and_extra() -> None:
    tz = load_config(None, plugins=load_plugins()).tz
    line = JsonFormatter(tz).format(
        record("account %s paused", "sms", event="account.paused", account="sms", when=tz)
    )
    assert "\n" not in line
    body = json.loads(line)
    assert body == {
        "time": "2026-11-23T09:00:05.123-03:00",
        "level": "warning",
        "logger": "engine.x",
        "message": "account sms paused",
        "event": "account.paused",
        "account": "sms",
        "when": "America/Sao_Paulo",  # anything JSON cannot hold is written as text
    }
    assert datetime.fromisoformat(body["time"]) == datetime(2026, 11, 23, 12, 0, 5, 123000, UTC)


def test_an_exception_is_one_json_line_with_its_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        failing = logging.LogRecord("engine.x", logging.ERROR, "", 1, "failed", (), sys.exc_info())
    body = json.loads(JsonFormatter(UTC).format(failing))
    assert body["level"] == "error" and "ValueError: boom" in body["exception"]


def test_text_lines_carry_the_offset_in_the_configured_zone() -> None:
    tz = load_config(None, plugins=load_plugins()).tz
    assert ZonedFormatter(tz).format(record()) == (
        "2026-11-23 09:00:05.123-03:00 WARNING engine.x: hello %s"
    )


def test_configure_logging_picks_the_format(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))  # restored afterwards
    monkeypatch.setattr(root, "level", root.level)
    config = load_config(None, plugins=load_plugins())
    configure_logging(config, "json")
    assert isinstance(root.handlers[0].formatter, JsonFormatter)
    configure_logging(config)
    assert isinstance(root.handlers[0].formatter, ZonedFormatter)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    drop = tmp_path / "drop"
    drop.mkdir()
    config = write_config(
        tmp_path,
        sources={"drop": {"kind": "local", "path": "drop"}},
        accounts={"sms": {"channel": "sms-long", "sandbox": True, "rate": 50}},
        wallets={"BRAD": {"sms_template": "Olá {{ nome }}"}},
    )
    today = datetime.now(UTC).astimezone(load(config).tz).strftime("%d%m%y")
    (drop / name(1, "cBRAD_smslong", day=today)).write_text(CSV)
    (drop / name(2, "cBRAD_smslong_email", day=today)).write_text(CSV)
    return config


def run_until_idle(
    config: Path, *args: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", "--config", str(config), "run", *UNTIL_IDLE, *args],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "DISPARO_LOG_FORMAT"} | env,
        timeout=180,  # a hang guard only
        check=False,
    )


@pytest.mark.parametrize("how", ["option", "environment"])
def test_run_logs_imports_moves_and_rejections_as_json_lines(workspace: Path, how: str) -> None:
    args, env = (
        (("--log-format", "json"), {}) if how == "option" else ((), {"DISPARO_LOG_FORMAT": "json"})
    )
    done = run_until_idle(workspace, *args, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    for r in records:
        assert {"time", "level", "logger", "message"} <= set(r)
        assert datetime.fromisoformat(r["time"]).utcoffset() is not None
    events = {r.get("event"): r for r in records}
    imported = events["file.imported"]
    assert imported["level"] == "info" and imported["logger"] == "engine.intake.collector"
    assert imported["source"] == "drop" and imported["rows_rejected"] == {"missing-address": 1}
    assert imported["campaign_id"] == 1 and imported["recipients"] == 2
    rejected = events["file.rejected"]
    assert rejected["level"] == "warning" and rejected["rules"] == ["N12"]
    assert rejected["message"].endswith("(N12)")
    moves = [r for r in records if r.get("event") == "file.moved"]
    assert sorted(m["moved_to"].split("/")[0] for m in moves) == ["processed", "rejected"]
    assert any(rep.endswith(".erro.txt") for m in moves for rep in m["reports"])


def test_run_logs_text_with_offsets(workspace: Path) -> None:
    done = run_until_idle(workspace, env={})
    assert done.returncode == 0, done.stderr
    imported = next(line for line in done.stderr.splitlines() if "imported mailing_" in line)
    stamp = " ".join(imported.split(" ")[:2])
    assert datetime.fromisoformat(stamp).utcoffset() is not None
    assert " INFO    engine.intake.collector: source drop: imported " in imported
    rejected = next(line for line in done.stderr.splitlines() if "rejected mailing_" in line)
    assert " WARNING " in rejected and rejected.endswith("(N12)")


def test_output_is_never_wrapped_when_not_a_terminal(workspace: Path, tmp_path: Path) -> None:
    done = run_until_idle(workspace, env={"COLUMNS": "80"})
    assert done.returncode == 0, done.stderr
    moved = next(
        line for line in done.stdout.splitlines() if "moved to" in line and "processed" in line
    )
    # the whole path on one line, far wider than 80 columns
    assert str(tmp_path / "drop" / "processed" / "mailing_") in moved
    assert moved.rstrip(" │").endswith("_cBRAD_smslong.csv") and len(moved) > 80
    console = make_console()  # pytest's captured stdout is not a terminal
    assert console.width == UNWRAPPED
    out = io.StringIO()
    console.file = out
    console.print("word " * 100)
    assert len(out.getvalue().splitlines()) == 1
