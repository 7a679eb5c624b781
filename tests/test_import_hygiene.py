"""The engine runs without the UI: importing it never loads Textual or the tui package."""

from __future__ import annotations

import subprocess
import sys


def test_engine_imports_without_textual() -> None:
    code = (
        "import sys, engine, engine.cli, engine.config, engine.store, engine.plugins;"
        "engine.plugins.load_plugins();"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'tui'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_import_contracts_hold() -> None:
    from pathlib import Path

    lint_imports = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run(
        [str(lint_imports)],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stdout + done.stderr
