"""``make demo``: a fresh demo workspace, then disparo's commands on the spec's example files.

Run as ``python -m engine.demo [DIR]``. Each step prints the command it runs, exactly as you
can type it (``.venv/bin/disparo …`` when the environment is not activated), so the demo
doubles as a tour of the CLI. The workspace is made afresh each time (``KEEP=1`` keeps it);
it holds a marker file, and a folder without one is never removed: the demo refuses it.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import random
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from datetime import timedelta
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

#: written into the workspace: only a folder holding it is the demo's to remove and remake
MARKER = ".disparo-demo"
#: the line the demo adds to its disparo.toml (workspaces made before the marker existed)
DEMO_LINE = "# --- added by the demo"

#: piped into a file or CI log, the demo's own rules are drawn 120 columns wide rather than 80
#: (the commands it runs never wrap when their output is not a terminal)
console = Console(
    highlight=False, width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 120
)
FIRST = ["Ana", "Bruno", "Carla", "Davi", "Elaine", "Fábio", "Gabriela", "Heitor", "Íris", "João"]
LAST = ["Silva", "Souza", "Oliveira", "Santos", "Lima", "Pereira", "Conceição", "Araújo"]


def program() -> str:
    """This environment's ``disparo`` as you would type it from here: ``disparo`` when that
    is the one on PATH (an activated environment, an installed application), else its path
    (``.venv/bin/disparo`` after ``make demo``)."""
    script = Path(sys.executable).parent / "disparo"
    if not script.exists():
        return f"{shlex.quote(sys.executable)} -m engine.cli"
    found = shutil.which("disparo")
    if found is not None and Path(found).resolve() == script.resolve():
        return "disparo"
    relative = os.path.relpath(script)
    return relative if not relative.startswith("..") else str(script)


def shown(*args: str) -> str:
    """A disparo command line as you can type it here."""
    return " ".join([program(), *(shlex.quote(a) for a in args)])


def command(*args: str) -> list[str]:
    """What ``shown(*args)`` says, to run: the very command shown, so the hints the commands
    print themselves (``invoked_as``) work as printed too."""
    script = Path(sys.executable).parent / "disparo"
    if not script.exists():
        return [sys.executable, "-m", "engine.cli", *args]
    return [program(), *args]  # `disparo` only when that is this very script (program())


def disparo(*args: str, check: bool = True) -> int:
    """Run the ``disparo`` of this environment, showing the command line."""
    console.print(f"\n[bold cyan]$ {shown(*args)}[/]", soft_wrap=True)
    done = subprocess.run(command(*args), check=False)
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
    paced = drop / deadline_example()
    paced.write_text(contacts(300, 9), encoding="utf-8")
    written.append(paced.name)
    return written


def deadline_example() -> str:
    """A paced SMS campaign whose deadline (_LE) falls 45 minutes from now: 10 % every 5
    minutes cannot finish in time, so its last batch will expire (D8) — what the TUI's
    deadline panel warns about."""
    now = RealClock().now().astimezone(ZoneInfo("America/Sao_Paulo"))
    deadline = now + timedelta(minutes=45)
    return f"mailing_{now:%d%m%y}_009_cBRAD_smsshort_q10005_LE{deadline:%d%m%y%H%M}.csv"


def is_demo_workspace(folder: Path) -> bool:
    """A folder the demo made: it holds the marker (or, made before the marker, the
    disparo.toml the demo writes)."""
    if (folder / MARKER).is_file():
        return True
    config = folder / "disparo.toml"
    try:
        return config.is_file() and DEMO_LINE in config.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False


def refusal(workspace: Path) -> str | None:
    """Why ``workspace`` cannot be the demo's, or None: the demo removes and remakes only a
    folder it made itself (or an empty one); anything else is left untouched."""
    if workspace.is_symlink():
        return f"{workspace} is a symbolic link; give the demo a folder of its own"
    if not workspace.exists():
        return None
    if not workspace.is_dir():
        return f"{workspace} exists and is not a folder"
    if is_demo_workspace(workspace) or not any(workspace.iterdir()):
        return None
    return (
        f"{workspace} exists and is not a demo workspace (it has no {MARKER}): the demo "
        "removes and remakes its workspace, so it never uses a folder of yours; choose a "
        "new folder (`make demo DEMO=another-folder`), or remove this one yourself"
    )


def prepare(workspace: Path) -> None:
    """Make ``workspace`` the demo's: refused (exit 2) when it is someone else's folder,
    removed first when it is a previous demo's (unless ``KEEP``), marked as the demo's."""
    refused = refusal(workspace)
    if refused is not None:
        console.print(f"[bold red]error:[/] {refused}", soft_wrap=True)
        sys.exit(2)
    if workspace.exists() and not os.environ.get("KEEP") and any(workspace.iterdir()):
        console.print(f"starting afresh: removing the previous demo workspace {workspace}/")
        shutil.rmtree(workspace)
    workspace.mkdir(parents=True, exist_ok=True)
    (workspace / MARKER).write_text(
        "This folder is a disparo demo workspace: `make demo` removes and remakes it.\n",
        encoding="utf-8",
    )


def main(argv: list[str]) -> None:
    workspace = Path(argv[0] if argv else "demo")
    config = workspace / "disparo.toml"
    console.rule("[bold]disparo demo")
    prepare(workspace)
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
    console.print(
        "\nThe accounts are sandboxes (`sandbox = true` in disparo.toml): e-mail goes to a "
        "local SMTP sink, SMS and WhatsApp to JSON-lines files in outbox/."
    )
    sink = start_sink(workspace, config)
    try:
        disparo(*c, "run", "--until-idle", "--settle", "0.5")
    finally:
        sink.terminate()
        sink.wait(timeout=30)
    disparo(*c, "sources")
    report = drop / "rejected" / (BROKEN.replace("221126", today)[:-4] + ".erro.txt")
    if report.exists():
        console.print(f"\n[bold]{report}[/] (published back to the customer):")
        console.print(report.read_text(encoding="utf-8"))
    console.rule("[bold]4. What was sent (D1–D16)")
    disparo(*c, "accounts")
    disparo(*c, "campaigns")
    paced = campaign_id(config, "_q15020")
    if paced is not None:
        console.print(
            "\nThe `_q15020` campaign sends 15 % of its base every 20 minutes: one batch went "
            "out now, the rest are released on schedule while `disparo run` runs."
        )
        disparo(*c, "campaign", "show", str(paced))
    deadline = campaign_id(config, "_q10005_LE")
    if deadline is not None:
        console.print(
            "\nThe `_q10005_LE…` campaign sends 10 % every 5 minutes but must stop 45 minutes "
            "from now: its last batch would be released after the deadline, so it expires."
        )
        disparo(*c, "campaign", "show", str(deadline))
    summarise_sandbox(workspace)
    show_tracking(workspace, config)
    console.rule("[bold]done")
    serve_sink = shown(
        "sink", "--listen", sink_address(config), "--maildir", str(workspace / "maildir")
    )
    console.print(
        f"The workspace is in {workspace}/. Drop more files into {drop}/ and run "
        f"`{shown('--config', str(config), 'run')}`, with `{serve_sink}` running in another "
        "terminal for the e-mail sandbox.",
        soft_wrap=True,
    )
    if program() != "disparo":
        console.print(
            f"`disparo` is not on your PATH: type `{program()}` as above, or put this "
            f"environment on PATH in your shell with `source {activate_script()}` and type "
            "`disparo`.",
            soft_wrap=True,
        )
    if interactive():
        watch_live(workspace, config)
    else:
        console.print(
            f"Watch it live: `{shown('--config', str(config), 'tui', '--engine')}` (with "
            f"`{serve_sink}` running), or run `make demo` in a terminal.",
            soft_wrap=True,
        )


def activate_script() -> str:
    """The environment's ``activate`` script, as a path from here."""
    script = Path(sys.executable).parent / "activate"
    relative = os.path.relpath(script)
    return relative if not relative.startswith("..") else str(script)


def sink_address(config: Path) -> str:
    """The sandbox sink's address the demo's configuration names."""
    found = re.search(r'sink = "([^"]+)"', config.read_text(encoding="utf-8"))
    return found.group(1) if found else "127.0.0.1:2525"


def interactive() -> bool:
    """A person at a terminal (not CI, not a pipe): the demo ends in the terminal UI."""
    return (
        sys.stdin.isatty()
        and sys.stdout.isatty()
        and not os.environ.get("CI")
        and not os.environ.get("DEMO_NO_TUI")
    )


def watch_live(workspace: Path, config: Path) -> None:
    """End in the terminal UI with the engine running in it: the paced campaigns release
    their batches in real time, the deadline counts down; pause and resume with p / r."""
    console.rule("[bold]7. Live: the terminal UI with the engine (q quits)")
    console.print(
        "Campaigns screen: Enter opens a campaign (its batches, the countdown to the next "
        "release, the deadline); p pauses, r resumes; 1–4 switch between campaigns, queues, "
        "sources and suppressions; Ctrl-P lists every action; q quits."
    )
    time.sleep(2)
    sink = start_sink(workspace, config)
    try:
        subprocess.run(
            command("--config", str(config), "tui", "--engine"),
            check=False,
        )
    finally:
        sink.terminate()
        sink.wait(timeout=30)


#: what the demo adds to the starter config: the sender that the example `_ce` names (D10)
#: and the WhatsApp template that the example `_nt` names (N16)
DEMO_CONFIG = """
# --- added by the demo -------------------------------------------------------------------
# The example file 007 asks for the sender AVISO@COMUNICADO.COM.BR (_ce).
[accounts.comunicado]
channel = "email"
sandbox = true
from_address = "AVISO@COMUNICADO.COM.BR"
from_name = "Comunicado"
sink = "127.0.0.1:{port}"
rate = 50.0

# The example file 006 sends the approved template TEMPLATE_HOMOLOGADO_ITAU (_nt).
[templates.TEMPLATE_HOMOLOGADO_ITAU]
content_sid = "HX0123456789abcdef0123456789abcdef"
variables = ["nome", "cidade"]
"""


def free_port(preferred: int) -> int:
    """``preferred`` when nothing listens there, else any free loopback port."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])


def start_sink(workspace: Path, config: Path) -> subprocess.Popen[bytes]:
    """Start ``disparo sink`` (the e-mail sandbox) and point the sandbox accounts at it."""
    port = free_port(2525)
    text = config.read_text(encoding="utf-8").replace('"127.0.0.1:2525"', f'"127.0.0.1:{port}"')
    if "[accounts.comunicado]" not in text:
        text += DEMO_CONFIG.format(port=port)
    config.write_text(text, encoding="utf-8")
    maildir = workspace / "maildir"
    args = ("sink", "--listen", f"127.0.0.1:{port}", "--maildir", str(maildir))
    console.print(f"\n[bold cyan]$ {shown(*args)} &[/]", soft_wrap=True)
    sink = subprocess.Popen(
        command(*args),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return sink
        if sink.poll() is not None:
            break
        time.sleep(0.1)
    console.print(f"[bold red]the sandbox sink did not start on 127.0.0.1:{port}[/]")
    sink.kill()
    sys.exit(1)


def campaign_id(config: Path, marker: str) -> int | None:
    """The id of the campaign whose name contains ``marker`` (from ``campaigns --json``)."""
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "--config", str(config), "campaigns", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        rows = json.loads(done.stdout)
    except ValueError:
        return None
    for row in rows:
        if marker in str(row.get("name", "")):
            return int(row["id"])
    return None


def summarise_sandbox(workspace: Path) -> None:
    """What the sandbox transports received: the Maildir and the outbox files."""
    console.rule("[bold]5. The sandbox transports")
    maildir = workspace / "maildir"
    mails = sorted((maildir / "new").glob("*")) if (maildir / "new").exists() else []
    console.print(f"{len(mails)} e-mail(s) in {maildir}/new/")
    if mails:
        message = email.message_from_bytes(mails[0].read_bytes(), policy=email.policy.default)
        console.print("one of them (headers):")
        shown = {
            "X-Sandbox-Mail-From": "envelope sender (VERP: bounces name the delivery)",
            "From": "",
            "To": "",
            "Subject": "",
            "Message-ID": "",
            "List-Unsubscribe": "",
            "List-Unsubscribe-Post": "RFC 8058 one-click",
        }
        for name, note in shown.items():
            if message[name] is not None:
                suffix = f"   # {note}" if note else ""
                console.print(f"  {name}: {message[name]}{suffix}", markup=False)
    outbox = workspace / "outbox"
    for path in sorted(outbox.glob("*.jsonl")) if outbox.exists() else []:
        lines = path.read_text(encoding="utf-8").splitlines()
        console.print(f"{len(lines)} message(s) in {path}")
        if lines:
            console.print(f"  first: {lines[0][:160]}", markup=False)


def tracking_links(workspace: Path) -> tuple[str, str] | None:
    """The open pixel and the first click link of one e-mail in the sink's Maildir."""
    maildir = workspace / "maildir" / "new"
    for path in sorted(maildir.glob("*")) if maildir.exists() else []:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        body = message.get_body(("html",))
        if body is None:
            continue
        html = body.get_content()
        pixel = re.search(r'src="([^"]+/o/[^"]+\.gif)"', html)
        link = re.search(r'href="([^"]+/c/[^"]+)"', html)
        if pixel and link:
            return pixel.group(1), link.group(1)
    return None


def show_tracking(workspace: Path, config: Path) -> None:
    """Serve the tracking endpoint, open and click one e-mail, and show what was recorded."""
    console.rule("[bold]6. Opens, clicks and unsubscribes come back (D17–D19)")
    found = tracking_links(workspace)
    if found is None:
        console.print("[yellow]no tracked e-mail in the sink; skipping this step[/]")
        return
    pixel, link = found
    port = free_port(8080)
    text = config.read_text(encoding="utf-8")
    public = re.search(r'public_url = "([^"]+)"', text)
    base = public.group(1) if public else "http://127.0.0.1:8080"
    listen = ("--config", str(config), "tracking", "serve", "--listen", f"127.0.0.1:{port}")
    console.print(f"\n[bold cyan]$ {shown(*listen)} &[/]", soft_wrap=True)
    server = subprocess.Popen(
        command(*listen),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if not wait_port(port, server):
            console.print(f"[bold red]the tracking endpoint did not start on port {port}[/]")
            return
        local = f"http://127.0.0.1:{port}"
        console.print(f"an e-mail's open pixel:  {pixel}", markup=False)
        console.print(f"its first tracked link:  {link}", markup=False)
        status, _ = fetch(pixel.replace(base, local, 1))
        console.print(f"GET the pixel → {status} (the open is recorded)")
        status, location = fetch(link.replace(base, local, 1))
        console.print(
            f"GET the link  → {status}, Location: {location} (from the campaign's link "
            "table, never from the request)"
        )
        tampered = link[:-1] + ("0" if link[-1] != "0" else "1")
        status, _ = fetch(tampered.replace(base, local, 1))
        console.print(f"GET a tampered link → {status} (no redirect, nothing recorded)")
    finally:
        server.terminate()
        server.wait(timeout=30)
    mailed = campaign_id(config, "_email_")
    if mailed is not None:
        disparo("--config", str(config), "campaign", "results", str(mailed), "--limit", "3")


def wait_port(port: int, process: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        if process.poll() is not None:
            return False
        time.sleep(0.1)
    return False


def fetch(url: str) -> tuple[int, str]:
    """GET ``url`` without following a redirect: (status, Location)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=10)
    try:
        connection.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
        response = connection.getresponse()
        return response.status, response.getheader("Location") or ""
    finally:
        connection.close()


if __name__ == "__main__":
    main(sys.argv[1:])
