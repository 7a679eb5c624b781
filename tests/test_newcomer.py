"""The newcomer's path: commands that only look never create a database; the demo never
removes a folder it did not make and its hints work as printed; the run summary's paths
exist; a waiting file says why in full; ``--json`` shapes are the documented ones; every
command and option the README shows exists (and every required option is shown)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import pytest

from engine import demo
from engine.cli import build_cli
from tests.helpers import load, name, parse_command, write_config

ROOT = Path(__file__).resolve().parents[1]
CSV = "nome;telefone\nAna;11988880001\nBia;11988880002\nCarla;\n"

#: commands that only look: never a database as a side effect
LOOKING = [
    ("campaigns",),
    ("campaigns", "--json"),
    ("campaign", "show", "1"),
    ("campaign", "results", "1", "--json"),
    ("campaign", "pause", "1"),
    ("accounts",),
    ("suppressions",),
    ("db", "status"),
    ("sources",),
]


@pytest.mark.parametrize("with_config", [False, True], ids=["no-config", "config"])
def test_looking_never_creates_a_database(run_cli: Any, tmp_path: Path, with_config: bool) -> None:
    prefix: tuple[str, ...] = ()
    if with_config:
        (tmp_path / "drop").mkdir()
        config = write_config(tmp_path, sources={"drop": {"kind": "local", "path": "drop"}})
        prefix = ("--config", str(config))
    for command in LOOKING:
        result = run_cli(*prefix, *command)
        assert result.exit_code == 2, (command, result.output)
        if command == ("sources",) and not with_config:
            assert "no configuration found" in result.output
        else:
            assert "error: no database yet:" in result.output, (command, result.output)
            assert "disparo.db does not exist" in result.output
        if command != ("sources",) or with_config:
            fix = "db upgrade`" if with_config else "no disparo.toml here"
            assert fix in result.output, (command, result.output)
    # names and plans need no database either
    assert run_cli(*prefix, "check-name", "mailing_221126_001_c1.csv").exit_code == 0
    plan = run_cli(*prefix, "plan", "mailing_221126_005_cBRAD_smsshort.csv", "--contacts", "5")
    assert plan.exit_code == 0, plan.output
    assert not list(tmp_path.glob("disparo.db*"))


@pytest.mark.postgres
def test_looking_at_an_empty_postgresql_database_does_not_make_it_ours(
    run_cli: Any, tmp_path: Path, pg_url: str
) -> None:
    config = write_config(tmp_path, engine={"database_url": pg_url})
    result = run_cli("--config", str(config), "campaigns")
    assert result.exit_code == 2 and "has no disparo tables" in result.output
    again = run_cli("--config", str(config), "campaigns")
    assert again.exit_code == 2  # still nothing made
    assert run_cli("--config", str(config), "db", "upgrade").exit_code == 0
    assert run_cli("--config", str(config), "campaigns").exit_code == 0


# -- the demo ----------------------------------------------------------------------------------


def test_the_demo_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    done = subprocess.run(
        [sys.executable, "-m", "engine.demo", str(mine)],
        capture_output=True,
        text=True,
        timeout=120,  # a hang guard only: it refuses at once
        check=False,
    )
    assert done.returncode == 2
    assert "is not a demo workspace" in done.stdout and "DEMO=another-folder" in done.stdout
    assert (mine / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.tex"]
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    assert "is not a folder" in (demo.refusal(a_file) or "")
    link = tmp_path / "link"
    link.symlink_to(mine)
    assert "symbolic link" in (demo.refusal(link) or "")


def test_the_demo_takes_a_new_an_empty_or_its_own_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KEEP", raising=False)
    assert demo.refusal(tmp_path / "new") is None
    empty = tmp_path / "empty"
    empty.mkdir()
    assert demo.refusal(empty) is None
    demo.prepare(empty)
    assert (empty / demo.MARKER).is_file() and demo.is_demo_workspace(empty)
    (empty / "disparo.db").write_text("an old run")
    demo.prepare(empty)  # its own: made afresh
    assert sorted(p.name for p in empty.iterdir()) == [demo.MARKER]
    older = tmp_path / "older"  # made before the marker existed
    older.mkdir()
    (older / "disparo.toml").write_text(f"[engine]\n\n{demo.DEMO_LINE} ---\n")
    assert demo.refusal(older) is None


def test_the_demo_shows_disparo_as_it_can_be_typed_here(tmp_path: Path) -> None:
    shown = demo.program()
    script = Path(sys.executable).parent / "disparo"
    if shown != "disparo":  # not on PATH: the environment's script, as a path from here
        assert Path(shown).resolve() == script.resolve()
    assert demo.shown("--config", "a b/disparo.toml", "run").endswith(
        "--config 'a b/disparo.toml' run"
    )


# -- what a run says --------------------------------------------------------------------------


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
    return config


def today(config: Path, days: int = 0) -> str:
    from datetime import timedelta

    now = datetime.now(UTC).astimezone(load(config).tz) + timedelta(days=days)
    return now.strftime("%d%m%y")


def test_the_run_summary_points_to_files_that_exist(
    run_cli: Any, workspace: Path, tmp_path: Path
) -> None:
    drop = tmp_path / "drop"
    day = today(workspace)
    (drop / name(1, "cBRAD_smslong", day=day)).write_text(CSV)
    (drop / name(2, "cBRAD_smslong_email", day=day)).write_text(CSV)  # N12: rejected by name
    (drop / name(3, "cBRAD_smslong", day=day)).write_text("nome;telefone\nCarla;\n")  # no rows
    result = run_cli("--config", str(workspace), "run", "--until-idle", "--settle", "0.05")
    assert result.exit_code == 0, result.output
    shown = {
        label: Path(path)
        for label, path in re.findall(
            r"│ (moved to|rejected rows listed in|why \(for the customer\)) +│ (\S+)",
            result.output,
        )
    }
    paths = re.findall(
        r"│ (?:moved to|rejected rows listed in|why \(for the customer\)) +│ (\S+)",
        result.output,
    )
    assert len(paths) == 7, result.output  # 3 files, 2 error reports, 2 rejected-row lists
    for path in paths:
        assert Path(path).is_file(), path
        assert Path(path).parent.name in ("processed", "rejected")
    assert shown
    assert (drop / "processed" / name(1, "cBRAD_smslong", day=day)).is_file()
    rows = drop / "processed" / (name(1, "cBRAD_smslong", day=day)[:-4] + ".rejeitados.csv")
    assert str(rows) in paths
    assert "spool" not in result.output


def test_the_summary_and_sources_say_why_a_file_waits_in_full(
    run_cli: Any, workspace: Path, tmp_path: Path
) -> None:
    later = name(1, "cBRAD_smslong", day=today(workspace, days=2))
    (tmp_path / "drop" / later).write_text(CSV)
    result = run_cli("--config", str(workspace), "run", "--until-idle", "--settle", "0.05")
    assert result.exit_code == 0, result.output
    dated = datetime.strptime(later[8:14], "%d%m%y").strftime("%d/%m/%Y")
    why = (
        f"the file is dated {dated} but the processing day is "
        f"{datetime.strptime(today(workspace), '%d%m%y').strftime('%d/%m/%Y')}; it is left "
        "where it is and imported only on its own day. To import it today, rename it with "
        f"`_{today(workspace)}` (N5)"
    )
    assert f"waiting: drop: {later}: {why}" in result.output
    listing = run_cli("--config", str(workspace), "sources")
    assert listing.exit_code == 0
    line = next(row for row in listing.output.splitlines() if later in row)
    assert "waiting" in line and why in line  # whole, on its line: never cut


def test_a_file_dated_a_past_day_says_it_is_never_imported_under_that_name(
    run_cli: Any, workspace: Path, tmp_path: Path
) -> None:
    earlier = name(1, "cBRAD_smslong", day=today(workspace, days=-3))
    (tmp_path / "drop" / earlier).write_text(CSV)
    result = run_cli("--config", str(workspace), "run", "--until-idle", "--settle", "0.05")
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert f"not imported: drop: {earlier}: the file is dated" in flat
    assert "a day already past" in flat and "never imported under this name" in flat  # N5
    assert f"rename it with `_{today(workspace)}`; otherwise remove it (N5)" in flat


# -- machine-readable output -----------------------------------------------------------------


def test_json_shapes_are_the_documented_ones(run_cli: Any, workspace: Path, tmp_path: Path) -> None:
    day = today(workspace)
    (tmp_path / "drop" / name(1, "cBRAD_smslong", day=day)).write_text(CSV)
    c = ("--config", str(workspace))
    assert run_cli(*c, "run", "--until-idle", "--settle", "0.05").exit_code == 0
    documents = {
        "check-name": (("check-name", "--json", "mailing_221126_001_c1.csv"), list),
        "plan": (("plan", "mailing_221126_001_c1_smslong.csv", "--contacts", "3", "--json"), dict),
        "campaigns": (("campaigns", "--json"), list),
        "campaign show": (("campaign", "show", "1", "--json"), dict),
        "accounts": (("accounts", "--json"), list),
        "suppressions": (("suppressions", "--json"), list),
        "plugins": (("plugins", "--json"), list),
        "publish": (("publish", "--dry-run", "--json"), list),
    }
    for what, (args, shape) in documents.items():
        result = run_cli(*c, *args)
        assert result.exit_code in (0, 1), (what, result.output)
        assert isinstance(json.loads(result.output), shape), what  # one document
    lines = run_cli(*c, "campaign", "results", "1", "--json").output.splitlines()
    assert len(lines) == 2 and all(isinstance(json.loads(line), dict) for line in lines)
    first = run_cli(*c, "campaign", "results", "1", "--json", "--limit", "1").output
    assert first.splitlines() == lines[:1]  # --limit holds with --json
    both = run_cli(*c, "campaign", "results", "1", "--csv", "x.csv", "--limit", "1")
    assert both.exit_code == 2 and "--csv writes every recipient" in both.output


# -- the README --------------------------------------------------------------------------------


def readme_commands() -> tuple[list[list[str]], list[str]]:
    """The ``disparo …`` lines in the code blocks of the README and docs/operations.md (as
    argument lists), and every command synopsis (a code span) in the first column of the
    README's tables."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    operations = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", text + operations, re.S):
        for raw in block.splitlines():
            line = raw.split(" #", 1)[0].strip().removeprefix("$ ")
            if line.startswith("disparo "):
                lines.append(shlex.split(line)[1:])
    synopses = []
    for row in re.findall(r"^\| (`disparo [^|]*(?:\\\|[^|]*)*) \|", text, re.M):
        for span in re.findall(r"`([^`]+)`", row):
            synopses.append(span.replace("\\|", "|"))
    return lines, synopses


def test_every_command_line_in_the_readme_parses() -> None:
    lines, _ = readme_commands()
    assert len(lines) >= 5
    for args in lines:
        parse_command(args)


def test_every_command_and_option_in_the_readme_tables_exists() -> None:
    _, synopses = readme_commands()
    assert len(synopses) > 25
    previous: list[click.Command] = []
    for span in synopses:
        words = span.removeprefix("disparo ").split()
        if words[0].startswith("--"):  # `… / --clear`: options of the command before
            commands = previous
        else:
            path = []
            for word in words:
                if not re.fullmatch(r"[a-z][a-z-]*(\|[a-z][a-z-]*)*", word):
                    break
                path.append(word.split("|"))
            assert path, span
            commands = []
            commands = [command_at(choice, span) for choice in _expand(path)]
        options = set(re.findall(r"(--[a-z][a-z-]*)", span))
        for command in commands:
            params = command.get_params(click.Context(command))  # lazy commands too
            known = {o for p in params for o in getattr(p, "opts", ())}
            assert options <= known, f"{span}: {sorted(options - known)} not options of it"
            required = {
                p.opts[0] for p in command.params if isinstance(p, click.Option) and p.required
            }
            assert required <= options, f"{span}: the required {sorted(required)} is not shown"
        previous = commands


def command_at(path: list[str], span: str) -> click.Command:
    """The command ``disparo PATH…`` names (groups followed by name)."""
    command: click.Command = build_cli()
    context = click.Context(command, info_name="disparo")
    for word in path:
        assert isinstance(command, click.Group), f"{span}: {command.name} has no subcommands"
        sub = command.get_command(context, word)
        assert sub is not None, f"{span}: `{' '.join(path)}` is not a command"
        command, context = sub, click.Context(sub, info_name=word, parent=context)
    return command


def _expand(path: list[list[str]]) -> list[list[str]]:
    out: list[list[str]] = [[]]
    for choices in path:
        out = [[*done, c] for done in out for c in choices]
    return out
