"""The engine runs without the UI: importing it, and loading the plugins, never loads Textual;
of the tui package only its thin plugin module (which registers `disparo tui`) is imported."""

from __future__ import annotations

import subprocess
import sys


def test_engine_imports_without_textual() -> None:
    code = (
        "import sys, engine, engine.cli, engine.config, engine.store, engine.plugins;"
        "engine.plugins.load_plugins();"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'tui')"
        " and m not in ('tui', 'tui.plugin'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_import_contracts_hold() -> None:
    from pathlib import Path

    lint_imports = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run(
        [str(lint_imports), "--no-cache"],  # nothing written into the checkout
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stdout + done.stderr
