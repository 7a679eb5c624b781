"""The commented starter file written by ``disparo init``."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from engine.config.settings import CONFIG_NAME, DEFAULT_TIME_ZONE


@dataclass(frozen=True)
class StarterBlock:
    """A comment and the TOML table written under it (``table`` None: comment only)."""

    comment: str
    table: Mapping[str, Any] | None = None


def render_blocks(blocks: list[StarterBlock]) -> str:
    """Comments and tomli-w tables, in order."""
    out: list[str] = []
    for block in blocks:
        for line in block.comment.strip("\n").splitlines():
            out.append(f"# {line}".rstrip())
        if block.table is not None:
            out.append(tomli_w.dumps(dict(block.table)).rstrip("\n"))
        out.append("")
    return "\n".join(out)


def starter_blocks() -> list[StarterBlock]:
    """The sections of the file ``disparo init`` writes (plugins do not add to it)."""
    return [
        StarterBlock(
            "disparo configuration. Every key is in `disparo config reference`\n"
            "(docs/configuration.md); check this file with `disparo config check`.\n"
            'Secrets are references only: `password_env = "VAR"` or '
            '`password_file = "path"` (F5).\n'
            "Relative paths are relative to this file."
        ),
        StarterBlock(
            "The engine. Times are shown in `time_zone`; the database defaults to SQLite\n"
            "(disparo.db beside this file). For several engine nodes use PostgreSQL:\n"
            '  database_url = "postgresql://disparo@db.example.com/disparo"\n'
            '  database_password_env = "DISPARO_DB_PASSWORD"',
            {"engine": {"time_zone": DEFAULT_TIME_ZONE, "spool_dir": "spool", "role": "operator"}},
        ),
        StarterBlock(
            "Sources: where mailing files are collected. This one is a local folder; remote\n"
            "kinds are ftp, ftps (explicit TLS) and sftp, e.g.:\n"
            "  [sources.parceiro]\n"
            '  kind = "sftp"\n'
            '  host = "sftp.parceiro.com.br"            # a bare host name (F2)\n'
            '  user = "disparo"\n'
            '  password_env = "PARCEIRO_SFTP_PASSWORD"  # never the password itself (F5)\n'
            '  known_hosts = "known_hosts"             # or host_key_fingerprint = "SHA256:..."\n'
            '  cron = "0 * * * *"                      # or every = "2m" (the default)\n'
            "Imported files move to processed/, rejected ones to rejected/ with a report.",
            {"sources": {"drop": {"kind": "local", "path": "drop", "every": "2m"}}},
        ),
        StarterBlock(
            "Sender accounts: one per channel and provider account. These start in the\n"
            "sandbox (`sandbox = true`): e-mail goes to the local sink (`disparo sink`), SMS and\n"
            "WhatsApp to JSON-lines files in outbox/. Nothing reaches people until you set\n"
            "sandbox = false and fill in the provider keys, e.g.:\n"
            "  [accounts.email]\n"
            '  host = "smtp.empresa.com.br"    # port 587 with STARTTLS by default\n'
            '  user = "disparo"\n'
            '  password_env = "SMTP_PASSWORD"\n'
            '  dkim_domain = "empresa.com.br"\n'
            '  dkim_selector = "disparo"\n'
            '  dkim_key_file = "secrets/dkim.pem"\n'
            "  [accounts.sms-long]\n"
            '  account_sid = "AC…"\n'
            '  auth_token_env = "TWILIO_AUTH_TOKEN"\n'
            '  from_number = "+5511999990000"    # or messaging_service_sid = "MG…"\n'
            "`rate` is messages per second (D10); the guard pauses an account above\n"
            "`bounce_limit` % bounces or `complaint_limit` % complaints over 24 h (D14).",
            {
                "accounts": {
                    "email": {
                        "channel": "email",
                        "sandbox": True,
                        "from_address": "contato@example.com.br",
                        "from_name": "Empresa",
                        "sink": "127.0.0.1:2525",
                        "rate": 20.0,
                    },
                    "sms-long": {"channel": "sms-long", "sandbox": True, "rate": 10.0},
                    "sms-short": {"channel": "sms-short", "sandbox": True, "rate": 10.0},
                    "whatsapp-exclusive": {
                        "channel": "whatsapp-exclusive",
                        "sandbox": True,
                        "rate": 10.0,
                    },
                    "whatsapp-shared": {
                        "channel": "whatsapp-shared",
                        "sandbox": True,
                        "from_numbers": ["+5511999990001", "+5511999990002"],
                        "rate": 10.0,
                    },
                    "whatsapp-prospect": {
                        "channel": "whatsapp-prospect",
                        "sandbox": True,
                        "from_number": "+5511999990003",
                        "rate": 10.0,
                    },
                }
            },
        ),
        StarterBlock(
            "Tracking: opens, clicks and unsubscribes come back to `public_url`, which must\n"
            "reach the endpoint listening on `listen` (put it behind your HTTPS proxy).\n"
            "The secret signs every link; it was generated for this workspace.",
            {
                "tracking": {
                    "public_url": "http://127.0.0.1:8080",
                    "secret_file": "secrets/tracking.key",
                    "listen": "127.0.0.1:8080",
                }
            },
        ),
        StarterBlock(
            "Bounces and complaints by e-mail (D14): an IMAP mailbox where the VERP return\n"
            "path delivers DSNs and ARF reports; handled ones move to `processed_folder`,\n"
            "unreadable ones stay, flagged $DisparoUnparsed. Check it with\n"
            "`disparo mailboxes test retorno`. E.g.:\n"
            "  [mailboxes.retorno]\n"
            '  host = "imap.empresa.com.br"\n'
            '  user = "bounces@empresa.com.br"\n'
            '  password_env = "DISPARO_IMAP_PASSWORD"\n'
            '  tls = "implicit"            # or "starttls" (port 143)\n'
            '  folder = "INBOX"\n'
            '  processed_folder = "disparo/handled"\n'
            '  every = "2m"\n'
            "Amazon SES users: subscribe `public_url`/ses to the SNS topics and list them in\n"
            '[tracking] ses_topics = ["arn:aws:sns:us-east-1:123456789012:ses-bounces"].'
        ),
        StarterBlock(
            "WhatsApp templates (_nt): the approved template's Content SID and the contact\n"
            "fields that fill {{1}}, {{2}}…, e.g.:\n"
            "  [templates.BOAS_VINDAS]\n"
            '  content_sid = "HX0123456789abcdef0123456789abcdef"\n'
            '  variables = ["nome", "cidade"]'
        ),
        StarterBlock(
            'Wallets ("carteiras"): defaults for the campaigns of files imported into them.\n'
            "A wallet not listed here still works; it just has no defaults.",
            {
                "wallets": {
                    "BRAD": {
                        "default_sender": "email",
                        "email_subject": "Novidades para você",
                        "email_template": "templates/email.html",
                        "sms_template": "Olá {{ nome }}, temos novidades para você.",
                    }
                }
            },
        ),
    ]


STARTER_FOLDERS = ("spool", "templates", "drop", "secrets")

STARTER_EMAIL = """<!doctype html>
<html lang="pt-BR">
  <body>
    <p>Olá {{ nome }},</p>
    <p>Temos novidades para você.</p>
    <p><a href="https://example.com/ofertas">Veja as ofertas</a></p>
  </body>
</html>
"""


def write_starter(directory: Path, *, force: bool = False) -> list[Path]:
    """Write ``disparo.toml`` and the folders it names into ``directory``; return what was made.

    Refuses to overwrite an existing config unless ``force``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / CONFIG_NAME
    if target.exists() and not force:
        raise FileExistsError(target)
    made: list[Path] = []
    target.write_text(render_blocks(starter_blocks()), encoding="utf-8")
    made.append(target)
    for folder in STARTER_FOLDERS:
        path = directory / folder
        if not path.exists():
            path.mkdir(parents=True)
            made.append(path)
    key = directory / "secrets" / "tracking.key"
    if not key.exists():
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
        made.append(key)
    template = directory / "templates" / "email.html"
    if not template.exists():
        template.write_text(STARTER_EMAIL, encoding="utf-8")
        made.append(template)
    return made
