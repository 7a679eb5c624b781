"""`disparo import FILE… [--wallet W] [--today D] [--json]`: one-off imports with a summary."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.helpers import name, write_config

CSV = "nome;telefone;email;cpf\nAna;11998877665;ana@x.com;1\nBia;;;2\nAna;;ana2@x.com;1\n"


def test_import_prints_a_summary(run_cli: Any, tmp_path: Path) -> None:
    write_config(tmp_path)
    (tmp_path / "BRAD").mkdir()
    file = Path("BRAD") / name(1, "dClientes")
    file.write_text(CSV)
    result = run_cli("import", "--today", "2026-11-23", str(file))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "IMPORTED" in out and "BRAD" in out
    assert re.search(r"rows read\s*│\s*3", out)
    assert re.search(r"contacts imported\s*│\s*1 \(1 new\)", out)
    assert re.search(r"merged duplicates\s*│\s*1", out) and "missing-contact 1" in out
    assert (tmp_path / "BRAD" / (file.stem + ".rejeitados.csv")).is_file()
    again = run_cli("import", "--today", "2026-11-23", str(file))
    assert again.exit_code == 1 and "DUPLICATE" in again.output


def test_import_json_wallet_override_and_campaign(run_cli: Any, tmp_path: Path) -> None:
    write_config(tmp_path, wallets={"ITAU": {"sms_template": "Oi {{ nome }}"}})
    file = tmp_path / name(2, "smslong_q50010")
    file.write_text("nome;telefone\nA;11998877665\nB;11988887777\nC;11977776666\n")
    result = run_cli("import", "--today", "2026-11-23", "--wallet", "ITAU", "--json", str(file))
    assert result.exit_code == 0, result.output
    [report] = json.loads(result.output)
    assert report["outcome"] == "imported" and report["wallet"] == "ITAU"
    assert report["channel"] == "sms-long" and report["recipients"] == 3
    assert report["batches"] == 2 and "no sender account" in report["held_reason"]


def test_import_refuses_other_days_and_bad_names(run_cli: Any, tmp_path: Path) -> None:
    write_config(tmp_path)
    other_day = tmp_path / name(1, "cBRAD", day="221126")
    other_day.write_text(CSV)
    result = run_cli("import", "--today", "2026-11-23", str(other_day))
    assert result.exit_code == 1 and "not-today" not in result.output  # stderr has the message
    bad = tmp_path / name(2, "cBRAD_smslong_email")
    bad.write_text(CSV)
    result = run_cli("import", "--today", "2026-11-23", "--json", str(bad))
    [report] = json.loads(result.output)
    assert report["outcome"] == "rejected"
    assert report["problems"][0]["code"] == "conflicting-channels"
