"""``make demo`` (the README's first command) runs end to end: the spec's example files are
imported and their campaigns sent through the sandbox transports; every command it shows
works as printed, though `disparo` is not on PATH."""

from __future__ import annotations

import json
import mailbox
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from engine.demo import MARKER
from engine.store import Store
from tests.helpers import parse_command


def runnable(line: str) -> None:
    """A command line the demo printed works as printed: its program exists (it is not a
    bare `disparo`, which is not on PATH here) and click parses its arguments."""
    words = shlex.split(line.removesuffix("&").strip())
    program, args = words[0], words[1:]
    if words[1:3] == ["-m", "engine.cli"]:
        args = words[3:]
    else:
        assert program != "disparo", f"{line!r}: `disparo` is not on PATH"
        assert Path(program).name == "disparo" and Path(program).exists(), line
    if args:
        parse_command(args)


def test_make_demo_imports_the_examples_and_sends_through_the_sandbox(tmp_path: Path) -> None:
    workspace = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if k != "DISPARO_CONFIG"}
    # as after `make demo`: no `disparo` on PATH
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if p and not (Path(p) / "disparo").exists()
    )
    done = subprocess.run(
        [sys.executable, "-m", "engine.demo", str(workspace)],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (workspace / MARKER).is_file()  # a later `make demo` may remove and remake it
    prompts = [line[2:] for line in done.stdout.splitlines() if line.startswith("$ ")]
    tail = done.stdout.split(" done ")[-1]
    hints = [h for h in re.findall(r"`([^`]+)`", tail) if "disparo" in h and " " in h]
    assert len(prompts) > 10 and len(hints) >= 3, tail
    for line in prompts + [h for h in hints if not h.startswith("source ")]:
        runnable(line)
    activate = next(h for h in re.findall(r"`([^`]+)`", tail) if h.startswith("source "))
    assert Path(activate.split()[1]).exists() or (Path.cwd() / activate.split()[1]).exists()
    drop = workspace / "drop"
    assert len(list((drop / "processed").rglob("mailing_*.csv"))) == 8
    assert len(list((drop / "rejected").glob("*.erro.txt"))) == 1  # the broken name
    # e-mail (file 007, `_ce` picks the account) went to the sink's Maildir
    mails = list(mailbox.Maildir(workspace / "maildir", create=False))
    assert len(mails) == 80
    assert {str(m["From"]) for m in mails} == {"Comunicado <AVISO@COMUNICADO.COM.BR>"}
    assert all(m["List-Unsubscribe"] and m["Message-ID"] for m in mails)
    # SMS and WhatsApp went to the outbox; `_q15020` sent its first batch of 15 %
    outbox = workspace / "outbox"
    lines = {p.stem: p.read_text().splitlines() for p in outbox.glob("*.jsonl")}
    assert {k: len(v) for k, v in lines.items()} == {
        "sms-long": 25,
        "sms-short": 90,  # 60 + the first 10 % of the _LE example
        "whatsapp-exclusive": 60,
    }
    whatsapp = json.loads(lines["whatsapp-exclusive"][0])
    assert whatsapp["From"] == "whatsapp:+5511998877665"  # the name's _nw11998877665
    assert whatsapp["ContentSid"].startswith("HX")
    assert json.loads(whatsapp["ContentVariables"])["1"]  # {{1}} = the contact's nome
    assert "4. What was sent" in done.stdout and "5. The sandbox transports" in done.stdout
    # 6: the tracking endpoint took an open and a click, refused a tampered link (D17)
    assert "GET the pixel → 200" in done.stdout
    assert "GET the link  → 302, Location: https://example.com/oferta" in done.stdout
    assert "GET a tampered link → 404" in done.stdout
    store = Store.open(f"sqlite:///{tmp_path / 'demo' / 'disparo.db'}")
    try:
        email = next(c for c in store.campaigns.recent() if c.channel == "email")
        assert (email.counters["opened"], email.counters["clicks"]) == (1, 1)
    finally:
        store.close()
