"""``make demo``: a demo workspace, and disparo's commands run on the spec's example names.

Run as ``python -m engine.demo [DIR]``. Each step prints the command it runs, so the demo
doubles as a tour of the CLI.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from rich.console import Console

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

console = Console(highlight=False)


def disparo(*args: str, check: bool = True) -> int:
    """Run the ``disparo`` of this environment, showing the command line."""
    shown = " ".join(shlex.quote(a) for a in ("disparo", *args))
    console.print(f"\n[bold cyan]$ {shown}[/]")
    done = subprocess.run([sys.executable, "-m", "engine.cli", *args], check=False)
    if check and done.returncode != 0:
        console.print(f"[bold red]demo step failed with exit status {done.returncode}[/]")
        sys.exit(done.returncode)
    return done.returncode


def main(argv: list[str]) -> None:
    workspace = Path(argv[0] if argv else "demo")
    config = workspace / "disparo.toml"
    console.rule("[bold]disparo demo")
    if not config.exists():
        disparo("init", str(workspace))
    else:
        console.print(f"reusing the demo workspace {workspace} (delete it to start afresh)")
    disparo("--config", str(config), "plugins")
    disparo("--config", str(config), "db", "upgrade")
    disparo("--config", str(config), "check-name", "--today", EXAMPLE_DAY, *EXAMPLES)
    disparo(
        "--config",
        str(config),
        "plan",
        EXAMPLES[4],
        "--contacts",
        "1000",
        "--now",
        f"{EXAMPLE_DAY}T09:00",
    )
    disparo(
        "--config",
        str(config),
        "plan",
        "mailing_221126_008_cBRAD_email_teOferta_q25060_LE2211261130.csv",
        "--contacts",
        "20000",
        "--rate",
        "2",
        "--now",
        f"{EXAMPLE_DAY}T09:00",
    )
    console.rule("[bold]done")
    console.print(f"The workspace is in {workspace}/; try `disparo --config {config} --help`.")


if __name__ == "__main__":
    main(sys.argv[1:])
