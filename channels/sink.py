"""``disparo sink``: a local SMTP server that keeps every message in a Maildir, for the
sandbox (demos and dry runs): sandbox e-mail accounts send here, never to people."""

from __future__ import annotations

import asyncio
import signal
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from engine import hookimpl

if TYPE_CHECKING:
    from email.message import Message

    from aiosmtpd.smtp import SMTP, Envelope, Session


def _smtp_class() -> type[SMTP]:
    """aiosmtpd's server, imported when a sink starts (registering `disparo sink` loads none
    of it, so every other command starts lighter)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from aiosmtpd.smtp import SMTP

    return SMTP


class MaildirHandler:
    """aiosmtpd handler: each message, with its envelope, into a Maildir."""

    def __init__(self, folder: Path) -> None:
        import mailbox  # here, not when `disparo sink` is registered (every start)

        for sub in ("tmp", "new", "cur"):  # Maildir(create=True) skips them if folder exists
            (folder / sub).mkdir(parents=True, exist_ok=True)
        self.maildir = mailbox.Maildir(folder, create=False)
        self.count = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        data = raw if isinstance(raw, bytes) else raw.encode()
        from email.parser import BytesParser

        message: Message = BytesParser().parsebytes(data)
        message["X-Sandbox-Mail-From"] = str(envelope.mail_from)
        message["X-Sandbox-Rcpt-To"] = ", ".join(envelope.rcpt_tos)
        await asyncio.to_thread(self.maildir.add, message)
        self.count += 1
        return "250 OK: kept in the sandbox Maildir"


async def serve(host: str, port: int, folder: Path, ready: asyncio.Event | None = None) -> None:
    """Run the sink until cancelled."""
    handler = MaildirHandler(folder)
    smtp = _smtp_class()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: smtp(
            handler, hostname="disparo-sink", ident="disparo sandbox sink", enable_SMTPUTF8=True
        ),
        host,
        port,
    )
    if ready is not None:
        ready.set()
    try:
        await asyncio.Event().wait()
    finally:
        server.close()
        await server.wait_closed()


@click.command("sink")
@click.option("--listen", default="127.0.0.1:2525", show_default=True, help="host:port")
@click.option(
    "--maildir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("sandbox-mail"),
    show_default=True,
)
def sink(listen: str, maildir: Path) -> None:
    """Run the sandbox SMTP sink: messages sent by `sandbox = true` e-mail accounts are kept
    in MAILDIR, never delivered."""
    host, _, port = listen.rpartition(":")

    async def main() -> None:
        task = asyncio.create_task(serve(host or "127.0.0.1", int(port), maildir))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        click.echo(
            f"sandbox sink on smtp://{host}:{port}, keeping mail in {maildir}/ (Ctrl-C stops)"
        )
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(main())


@hookimpl
def register_commands(cli: Any) -> None:
    cli.add_command(sink)
