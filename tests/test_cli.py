"""The first commands: --help, init, plugins, db, check-name (spec's last section), plan (D9)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from engine.demo import EXAMPLES

SPEC_DAY = "2026-11-22"


def test_help_lists_the_commands(run_cli: Any) -> None:
    result = run_cli("--help")
    assert result.exit_code == 0
    for command in ("check-name", "plan", "init", "plugins", "db"):
        assert command in result.output


def test_console_script_is_installed() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "disparo"), "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and "disparo" in done.stdout


def test_init_then_db_upgrade_and_status(run_cli: Any, tmp_path: Path) -> None:
    result = run_cli("init", "ws")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ws" / "disparo.toml").is_file()
    assert "created" in result.output
    again = run_cli("init", "ws")
    assert again.exit_code == 1 and "--force" in again.output
    config = str(tmp_path / "ws" / "disparo.toml")
    status = run_cli("--config", config, "db", "status")
    assert status.exit_code == 2 and "no database yet" in status.output
    assert f"it is created by `disparo --config {config} db upgrade`" in status.output
    assert not (tmp_path / "ws" / "disparo.db").exists()  # looking made none
    upgrade = run_cli("--config", config, "db", "upgrade")
    from engine.store.migrate import head_revision

    assert upgrade.exit_code == 0 and f"revision {head_revision()}" in upgrade.output
    assert (tmp_path / "ws" / "disparo.db").is_file()
    assert "up to date" in run_cli("--config", config, "db", "status").output


def test_bad_config_is_reported_with_file_and_key(run_cli: Any, tmp_path: Path) -> None:
    (tmp_path / "disparo.toml").write_text('[engine]\ntime_zone = "Nowhere/City"\n')
    result = run_cli("check-name", "mailing_221126_001_c1.csv")
    assert result.exit_code == 2
    assert "disparo.toml: engine.time_zone: expected an IANA time zone" in result.output


def test_check_name_json_for_the_spec_examples(run_cli: Any) -> None:
    result = run_cli("check-name", "--today", SPEC_DAY, "--json", *EXAMPLES)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [d["file"] for d in data] == list(EXAMPLES)
    assert all(d["status"] == "valid" and d["errors"] == [] for d in data)
    assert data[4]["mailing"]["pacing"] == {"percent": 15, "interval_minutes": 20}


def test_check_name_exit_status_and_codes(run_cli: Any) -> None:
    result = run_cli(
        "check-name",
        "--today",
        SPEC_DAY,
        "--json",
        "mailing_221126_001_c1.csv",
        "mailing_221126_002_c1_smslong_smsshort.csv",
        "foo.csv",
    )
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert [d["status"] for d in data] == ["valid", "invalid", "not-mailing"]
    assert data[1]["errors"][0]["code"] == "conflicting-channels"
    assert data[2]["mailing"] is None


def test_check_name_warnings_keep_exit_zero(run_cli: Any) -> None:
    result = run_cli("check-name", "--today", "2026-11-23", "--json", "mailing_221126_001_c1.csv")
    assert result.exit_code == 0
    assert json.loads(result.output)[0]["warnings"][0]["code"] == "not-today"


def test_check_name_uses_wallet_default_subjects_from_config(run_cli: Any, tmp_path: Path) -> None:
    name = "mailing_221126_001_cBRAD_email.csv"
    assert run_cli("check-name", "--today", SPEC_DAY, name).exit_code == 1
    (tmp_path / "disparo.toml").write_text('[wallets.BRAD]\nemail_subject = "Olá"\n')
    assert run_cli("check-name", "--today", SPEC_DAY, name).exit_code == 0


def test_check_name_human_table(run_cli: Any) -> None:
    result = run_cli("check-name", "--today", SPEC_DAY, EXAMPLES[5], "mailing_221126_9_c1_zz.csv")
    assert result.exit_code == 1
    out = result.output
    assert "valid" in out and "invalid" in out and "whatsapp-exclusive" in out
    assert "unknown-parameter" in out


def test_check_name_bad_today(run_cli: Any) -> None:
    result = run_cli("check-name", "--today", "22/11/2026", "x.csv")
    assert result.exit_code == 2 and "YYYY-MM-DD" in result.output


def test_plan_json_keys_and_schedule(run_cli: Any) -> None:
    result = run_cli(
        "plan", EXAMPLES[4], "--contacts", "1000", "--now", "2026-11-22T09:00", "--json"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert {"batches", "finish_at", "expired"} <= set(data)
    assert [b["size"] for b in data["batches"]] == [150] * 6 + [100]
    assert data["batches"][1]["release_at"] == "2026-11-22T09:20:00-03:00"
    assert data["rate"] == 10 and data["expired"] == 0


def test_plan_marks_batches_after_the_deadline(run_cli: Any) -> None:
    name = "mailing_221126_008_cBRAD_smsshort_q25060_LE2211261130.csv"
    result = run_cli("plan", name, "--contacts", "1000", "--now", "2026-11-22T09:00", "--json")
    data = json.loads(result.output)
    # batches at 09:00, 10:00, 11:00 go out; 12:00 is after the 11:30 deadline
    assert [b["expired"] for b in data["batches"]] == [False, False, False, True]
    assert data["expired"] == 250
    human = run_cli("plan", name, "--contacts", "1000", "--now", "2026-11-22T09:00")
    assert "250 recipients (25%) would expire" in human.output


def test_plan_start_in_the_future_and_rate(run_cli: Any) -> None:
    name = "mailing_221126_009_c1_smslong_i2211261400.csv"
    result = run_cli(
        "plan", name, "--contacts", "100", "--now", "2026-11-22T09:00", "--rate", "2", "--json"
    )
    data = json.loads(result.output)
    assert data["start_at"] == "2026-11-22T14:00:00-03:00"
    assert data["finish_at"] == "2026-11-22T14:00:50-03:00"


def test_plan_refuses_invalid_and_channel_less_names(run_cli: Any) -> None:
    bad = run_cli("plan", "mailing_221126_001_c1_zz.csv", "--contacts", "5")
    assert bad.exit_code == 1 and "unknown-parameter" in bad.output
    import_only = run_cli("plan", "mailing_221126_001_c1.csv", "--contacts", "5")
    assert import_only.exit_code == 1 and "N21" in import_only.output
