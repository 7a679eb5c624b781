"""``make demo``: a fresh demo workspace, then disparo's commands on the spec's example files.

Run as ``python -m engine.demo [DIR]``. Each step prints the command it runs, so the demo
doubles as a tour of the CLI. The workspace is made afresh each time (``KEEP=1`` keeps it).
"""

from __future__ import annotations

import os
import random
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

from rich.console import Console

from engine.clock import RealClock, local_today

#: The spec's examples (spec/mailing-names.md), dated 22/11/2026.
EXAMPLE_DAY = "2026-11-22"
EXAMPLES = (
    "123/mailing_221126_001.csv",
    "mailing_221126_002_c123_dRégua 60 dias.csv",
    "mailing_221126_003_c123_h.csv",
    "mailing_221126_004_cALTORISCO3_smslong_i0102180820.csv",
    "mailing_221126_005_cBRAD_smsshort_q15020.csv",
    "mailing_221126_006_cMAIOR30_whatsappexclusivo_nw11998877665_x36_ntTEMPLATE_HOMOLOGADO_ITAU.csv",
    "mailing_221126_007_c123_email_ceAVISO@COMUNICADO.COM.BR_teAportunidade!!!.csv",
)
#: a mistake on purpose, to show a rejection and its report
BROKEN = "mailing_221126_008_cBRAD_smslong_email.csv"

console = Console(highlight=False)
FIRST = ["Ana", "Bruno", "Carla", "Davi", "Elaine", "Fábio", "Gabriela", "Heitor", "Íris", "João"]
LAST = ["Silva", "Souza", "Oliveira", "Santos", "Lima", "Pereira", "Conceição", "Araújo"]


def disparo(*args: str, check: bool = True) -> int:
    """Run the ``disparo`` of this environment, showing the command line."""
    shown = " ".join(shlex.quote(a) for a in ("disparo", *args))
    console.print(f"\n[bold cyan]$ {shown}[/]")
    done = subprocess.run([sys.executable, "-m", "engine.cli", *args], check=False)
    if check and done.returncode != 0:
        console.print(f"[bold red]demo step failed with exit status {done.returncode}[/]")
        sys.exit(done.returncode)
    return done.returncode


def contacts(count: int, seed: int, *, bad: int = 0, message: bool = False) -> str:
    """A CSV of ``count`` made-up contacts (``bad`` of them with broken phones)."""
    rng = random.Random(seed)  # noqa: S311 - made-up demo data
    header = "nome;telefone;email;cpf;cidade" + (";mensagem" if message else "")
    lines = [header]
    for i in range(count):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        phone = f"(11) 9{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}"
        if i < bad:
            phone = f"{rng.randint(100, 999)}"
        email = f"{first.lower()}.{last.lower()}{i}@example.com"
        row = [f"{first} {last}", phone, email, f"{seed:03d}{i:08d}", "São Paulo"]
        if message:
            row.append(f"{first}, sua fatura vence amanhã.")
        lines.append(";".join(row))
    return "\n".join(lines) + "\n"


def drop_examples(drop: Path, today: str) -> list[str]:
    """The spec's example files, dated today (N5), with contents that fit each one."""
    written = []
    contents = {
        0: contacts(40, 1),
        1: contacts(30, 2),
        2: contacts(50, 3, bad=4),
        3: contacts(25, 4, message=True),
        4: contacts(400, 5),
        5: contacts(60, 6),
        6: contacts(80, 7),
    }
    for index, example in enumerate(EXAMPLES):
        path = drop / example.replace("221126", today)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(contents[index], encoding="utf-8")
        written.append(path.relative_to(drop).as_posix())
        if "_email" in example:
            path.with_suffix(".html").write_text(
                "<html><body><p>Olá {{ nome }},</p><p>Uma oportunidade para você em "
                '{{ cidade }}.</p><p><a href="https://example.com/oferta">Ver</a></p>'
                "</body></html>",
                encoding="utf-8",
            )
    broken = drop / BROKEN.replace("221126", today)
    broken.write_text(contacts(5, 8), encoding="utf-8")
    written.append(broken.name)
    return written


def main(argv: list[str]) -> None:
    workspace = Path(argv[0] if argv else "demo")
    config = workspace / "disparo.toml"
    console.rule("[bold]disparo demo")
    if workspace.exists() and not os.environ.get("KEEP"):
        console.print(f"starting afresh: removing the previous demo workspace {workspace}/")
        shutil.rmtree(workspace)
    if not config.exists():
        disparo("init", str(workspace))
    c = ("--config", str(config))
    disparo(*c, "plugins")
    console.rule("[bold]1. What the file names say (N1–N21)")
    disparo(*c, "check-name", "--today", EXAMPLE_DAY, *EXAMPLES)
    disparo(*c, "check-name", "--today", EXAMPLE_DAY, BROKEN, check=False)
    console.rule("[bold]2. How a campaign would be paced (D5–D9)")
    disparo(*c, "plan", EXAMPLES[4], "--contacts", "1000", "--now", f"{EXAMPLE_DAY}T09:00")
    disparo(
        *c,
        "plan",
        "mailing_221126_009_cBRAD_email_teOferta_q25060_LE2211261130.csv",
        "--contacts",
        "20000",
        "--rate",
        "2",
        "--now",
        f"{EXAMPLE_DAY}T09:00",
    )
    console.rule("[bold]3. Collecting and importing dropped files")
    today = local_today(RealClock(), ZoneInfo("America/Sao_Paulo")).strftime("%d%m%y")
    drop = workspace / "drop"
    files = drop_examples(drop, today)
    console.print(f"dropped {len(files)} files (dated today, {today}) into {drop}/:")
    for f in files:
        console.print(f"  {f}")
    disparo(*c, "run", "--until-idle", "--settle", "0.5")
    disparo(*c, "sources")
    report = drop / "rejected" / (BROKEN.replace("221126", today)[:-4] + ".erro.txt")
    if report.exists():
        console.print(f"\n[bold]{report}[/] (published back to the customer):")
        console.print(report.read_text(encoding="utf-8"))
    console.rule("[bold]done")
    console.print(
        f"The workspace is in {workspace}/. Drop more files into {drop}/ and run "
        f"`disparo --config {config} run`."
    )


if __name__ == "__main__":
    main(sys.argv[1:])
