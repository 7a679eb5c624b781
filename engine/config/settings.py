"""The settings a validated ``disparo.toml`` yields, and the key tables of its sections."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from engine.config.keys import MISSING, Key
from engine.config.secrets import SecretRef
from engine.rates import Limits

CONFIG_NAME = "disparo.toml"
ENV_VAR = "DISPARO_CONFIG"
DEFAULT_TIME_ZONE = "America/Sao_Paulo"
ROLES = ("viewer", "operator", "admin")

# Sections

ENGINE_KEYS: dict[str, Key] = {
    "time_zone": Key("zone", ZoneInfo(DEFAULT_TIME_ZONE), "Times are shown in this zone."),
    "database_url": Key("str", None, "Default: SQLite file disparo.db beside the config."),
    "database_password": Key("secret", None),
    "spool_dir": Key("path", Path("spool")),
    "role": Key("choice", "operator", choices=ROLES),
    "lease": Key(
        "duration",
        timedelta(seconds=30),
        help="How long the work an engine holds (claimed deliveries, a sender account, a "
        "bounce mailbox) stays reserved without a heartbeat: a stopped engine's work is "
        "rescued by another after this (D12). Renewed at every heartbeat.",
    ),
    "heartbeat": Key(
        "duration",
        None,
        help="How often a running engine records that it is alive and renews its leases: at "
        "most a third of `lease`. Default: 5 s, or a third of `lease` when that is shorter.",
    ),
    "stop_timeout": Key(
        "duration",
        timedelta(seconds=10),
        help="How long a stopping engine (SIGTERM, Ctrl-C) waits for the messages in flight; "
        "sends still running then are abandoned and retried by the next engine.",
    ),
    "log_level": Key("choice", "info", choices=("debug", "info", "warning", "error")),
}

SOURCE_KEYS: dict[str, Key] = {
    "kind": Key("choice", MISSING, "The kind of source: local, ftp, ftps or sftp."),
    "format": Key("choice", "mailing"),
    "every": Key("duration", timedelta(minutes=2)),
    "cron": Key("cron", None),
    "stable_listings": Key("int", 2, minimum=2, maximum=100),
    "processed_dir": Key("str", "processed"),
    "rejected_dir": Key("str", "rejected"),
    "enabled": Key("bool", True),
    "allow_private": Key("bool", False),
}

ACCOUNT_KEYS: dict[str, Key] = {
    "channel": Key("choice", MISSING, "The channel this account sends on."),
    "rate": Key("float", None, "Messages per second (default: the channel's own).", minimum=0.001),
    "burst": Key("int", None, minimum=1),
    "sandbox": Key("bool", False, help="Send to the local sink / outbox, never to people."),
    "concurrency": Key("int", None, minimum=1, maximum=256),
    # the guard (D14, D15), in percent of the messages sent over 24 h
    "bounce_limit": Key("float", 5.0, minimum=0.0, maximum=100.0),
    "complaint_limit": Key("float", 0.1, minimum=0.0, maximum=100.0),
    "min_sample": Key("int", 200, minimum=1),
    "min_pause": Key("duration", timedelta(hours=24)),
    # the circuit breaker: a channel failing for a systemic reason pauses the account
    "breaker_failures": Key(
        "int",
        5,
        help="Consecutive sends failing for a systemic reason (connection, TLS, login, the "
        "provider down, the channel raising) that pause the account.",
        minimum=1,
        maximum=10_000,
    ),
    "breaker_pause": Key(
        "duration",
        timedelta(minutes=1),
        help="How long a paused account waits before one delivery probes the channel; the "
        "wait doubles after each failed probe.",
    ),
    "breaker_max_pause": Key(
        "duration",
        timedelta(minutes=15),
        help="The longest wait between two probes of a paused account.",
    ),
}

TRACKING_KEYS: dict[str, Key] = {
    "public_url": Key("str", help="The address people's clicks and opens reach (https://…)."),
    "secret": Key("secret", help="Signs every link and token (HMAC-SHA256)."),
    "listen": Key("str", "127.0.0.1:8080", help="host:port the tracking endpoint binds."),
    "open_tracking": Key("bool", True),
    "click_tracking": Key("bool", True),
    "ses_topics": Key(
        "strings", (), help="SNS topic ARNs whose SES notifications are accepted at /ses."
    ),
    "metrics_from": Key(
        "strings",
        ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"),
        help="Networks allowed to read /metrics (the client's address, not a header).",
    ),
}

MAILBOX_KEYS: dict[str, Key] = {
    "host": Key("str", MISSING, "The IMAP server (a bare host name, F2)."),
    "port": Key("int", None, minimum=1, maximum=65535),
    "tls": Key("choice", "implicit", choices=("implicit", "starttls")),
    "ca_file": Key("path", None),
    "user": Key("str", MISSING),
    "password": Key("secret", MISSING),
    "folder": Key("str", "INBOX", help="Where bounces and complaints arrive."),
    "processed_folder": Key("str", "disparo/handled", help="Where handled reports move."),
    "every": Key("duration", timedelta(minutes=2)),
    "allow_private": Key("bool", False),
    "enabled": Key("bool", True),
    "timeout": Key("duration", timedelta(seconds=30)),
}

TEMPLATE_KEYS: dict[str, Key] = {
    "content_sid": Key("str", help="The approved template's Content SID (HX…)."),
    "variables": Key("strings", (), help="Contact fields for {{1}}, {{2}}… in order."),
}

WALLET_KEYS: dict[str, Key] = {
    "default_sender": Key("str", None, "The account ([accounts.NAME]) the wallet sends with."),
    "email_subject": Key("str", None),
    "email_template": Key("path", None),
    "sms_template": Key("str", None),
    "from_name": Key("str", None),
    "reply_to": Key("str", None),
}


@dataclass(frozen=True)
class PollSchedule:
    """When a source is polled: every ``every``, or at the times of the ``cron`` expression."""

    every: timedelta | None
    cron: str | None

    def describe(self) -> str:
        if self.cron:
            return f"cron {self.cron}"
        assert self.every is not None
        seconds = int(self.every.total_seconds())
        if seconds % 3600 == 0:
            return f"every {seconds // 3600} h"
        if seconds % 60 == 0:
            return f"every {seconds // 60} min"
        return f"every {seconds} s"


@dataclass(frozen=True)
class EngineSettings:
    time_zone: ZoneInfo
    database_url: str
    database_password: SecretRef | None
    spool_dir: Path
    role: str
    log_level: str
    lease: timedelta = timedelta(seconds=30)
    heartbeat: timedelta = timedelta(seconds=5)
    stop_timeout: timedelta = timedelta(seconds=10)


@dataclass(frozen=True)
class SourceSettings:
    name: str
    kind: str
    format: str
    schedule: PollSchedule
    stable_listings: int
    processed_dir: str
    rejected_dir: str
    enabled: bool
    allow_private: bool
    #: the kind's, the format's and the publishers' own keys (host, path, user, password,
    #: results_after…), validated by their ``config_keys``
    options: Mapping[str, Any]
    #: the publishers writing results back to this source (``publish``), in order
    publish: tuple[str, ...] = ()


@dataclass(frozen=True)
class AccountSettings:
    name: str
    channel: str
    rate: float
    burst: int
    options: Mapping[str, Any]
    sandbox: bool = False
    concurrency: int | None = None
    bounce_limit: float = 5.0
    complaint_limit: float = 0.1
    min_sample: int = 200
    min_pause: timedelta = timedelta(hours=24)
    breaker_failures: int = 5
    breaker_pause: timedelta = timedelta(minutes=1)
    breaker_max_pause: timedelta = timedelta(minutes=15)

    @property
    def limits(self) -> Limits:
        """The guard's limits of this account (D15)."""
        return Limits(self.bounce_limit, self.complaint_limit, self.min_sample)


@dataclass(frozen=True)
class TrackingSettings:
    """``[tracking]``: where tracking links point and the secret that signs them."""

    public_url: str
    secret: SecretRef
    listen: str = "127.0.0.1:8080"
    open_tracking: bool = True
    click_tracking: bool = True
    ses_topics: tuple[str, ...] = ()
    metrics_from: tuple[str, ...] = ("127.0.0.0/8", "::1/128")


@dataclass(frozen=True)
class MailboxSettings:
    """``[mailboxes.NAME]``: an IMAP mailbox where bounces (DSN) and complaints (ARF)
    arrive, polled every ``every``."""

    name: str
    host: str
    port: int
    tls: str
    user: str
    password: SecretRef
    folder: str
    processed_folder: str
    every: timedelta
    allow_private: bool
    enabled: bool
    timeout: timedelta
    ca_file: Path | None = None


@dataclass(frozen=True)
class TemplateSettings:
    """``[templates.NAME]``: an approved WhatsApp template (N16, ``_nt``)."""

    name: str
    content_sid: str
    variables: tuple[str, ...] = ()


@dataclass(frozen=True)
class WalletSettings:
    code: str
    default_sender: str | None = None
    email_subject: str | None = None
    email_template: Path | None = None
    sms_template: str | None = None
    from_name: str | None = None
    reply_to: str | None = None


@dataclass(frozen=True)
class Config:
    """A validated configuration. ``path`` is None for the built-in defaults."""

    path: Path | None
    root: Path
    engine: EngineSettings
    sources: Mapping[str, SourceSettings]
    accounts: Mapping[str, AccountSettings]
    wallets: Mapping[str, WalletSettings]
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)
    tracking: TrackingSettings | None = None
    templates: Mapping[str, TemplateSettings] = field(default_factory=dict)
    mailboxes: Mapping[str, MailboxSettings] = field(default_factory=dict)

    @property
    def tz(self) -> ZoneInfo:
        return self.engine.time_zone

    def wallet(self, code: str) -> WalletSettings:
        """The wallet's settings; a wallet absent from the file has none (all defaults)."""
        return self.wallets.get(code) or WalletSettings(code)

    def default_subject(self, wallet: str) -> str | None:
        """The wallet's default e-mail subject (N17)."""
        return self.wallet(wallet).email_subject
