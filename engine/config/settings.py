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
#: how ``disparo run`` writes its logs (``--log-format``, or this environment variable)
LOG_FORMATS = ("text", "json")
LOG_FORMAT_ENV = "DISPARO_LOG_FORMAT"

# Checks of single values


def check_listen(value: str) -> str | None:
    """``host:port`` (``[::1]:8080`` for IPv6), port 0–65535."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        return f'expected host:port such as "127.0.0.1:8080" or "[::1]:8080"; got "{value}"'
    return None


def _template_problem(source: str, what: str) -> str | None:
    """A template's syntax error, said the way the importer would say it (N28)."""
    from jinja2 import Environment, TemplateSyntaxError

    try:
        Environment(autoescape=True).parse(source)  # parsed only, never rendered
    except TemplateSyntaxError as exc:
        return (
            f"the {what} is not a valid template: {exc.message} (line {exc.lineno}); write "
            "variables as `{{ nome }}`"
        )
    return None


def check_template_file(path: Path) -> str | None:
    """An e-mail template file: UTF-8 (or Windows-1252, as the importer reads it) and a
    template that compiles, so a wallet's mistake is the operator's at start, not a
    customer's file rejected later."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
    problem = _template_problem(text, f"e-mail template {path}")
    return f"{problem}; fix the file" if problem else None


def check_template_text(text: str) -> str | None:
    return _template_problem(text, "SMS template")


# Sections

ENGINE_KEYS: dict[str, Key] = {
    "time_zone": Key(
        "zone",
        ZoneInfo(DEFAULT_TIME_ZONE),
        "The IANA time zone of the file names' dates and times (N5, _LE, _i), of cron "
        "schedules, and of every time shown (the CLI, the UI, the logs).",
    ),
    "database_url": Key(
        "str",
        None,
        'The database: "sqlite:///path/to/disparo.db" or "postgresql://user@host/db" (several '
        "engine nodes). Default: SQLite disparo.db beside the config file. Never with a "
        "password in it: see `database_password`.",
    ),
    "database_password": Key(
        "secret", None, "The PostgreSQL password, when `database_url` names a server."
    ),
    "spool_dir": Key(
        "path",
        Path("spool"),
        "Where collected files are downloaded (under a temporary name) before they are "
        "imported; one folder per source.",
        target="created",
    ),
    "role": Key(
        "choice",
        "operator",
        "What the CLI and the UI may do by default (viewer: look; operator: pause, resume, "
        "cancel, suppress; admin: also override the guard); `--role` chooses per command.",
        choices=ROLES,
    ),
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
    "log_level": Key(
        "choice",
        "info",
        "The least severe log records written by `disparo run` (and reread on reload).",
        choices=("debug", "info", "warning", "error"),
    ),
    "workers": Key(
        "int",
        1,
        "How many sender processes `disparo run` runs on this store (`--workers` wins): the "
        "first also collects, publishes and serves tracking; each sender account is sent by "
        "one process at a time, so more than one helps with several accounts.",
        minimum=1,
        maximum=64,
    ),
    "worker_restarts": Key(
        "int",
        5,
        "With `workers` > 1: a sender process that dies is started again (after 1 s, doubling "
        "to a minute) unless it died this many times within `worker_restart_window`; then it "
        "is left stopped, said in the log, the run's summary and `disparo status`.",
        minimum=1,
        maximum=1000,
    ),
    "worker_restart_window": Key(
        "duration",
        timedelta(minutes=10),
        help="The window `worker_restarts` counts a sender process's deaths in.",
    ),
}

SOURCE_KEYS: dict[str, Key] = {
    "kind": Key("choice", MISSING, "The kind of source: where and how its files are reached."),
    "format": Key("choice", "mailing", "What the files hold and how their names are read."),
    "every": Key(
        "duration", timedelta(minutes=2), "How often the source is polled (or give `cron`)."
    ),
    "cron": Key(
        "cron",
        None,
        'When the source is polled, as a cron expression in engine.time_zone (e.g. "0 * * * *"); '
        "instead of `every`.",
    ),
    "stable_listings": Key(
        "int",
        2,
        "How many listings in a row must show a file with the same size and time before it is "
        "taken (F8): a file still being written is left alone.",
        minimum=2,
        maximum=100,
    ),
    "processed_dir": Key(
        "str",
        "processed",
        "The folder on the source where imported files are moved, with their reports beside "
        "them (relative to the source's folder).",
    ),
    "rejected_dir": Key(
        "str",
        "rejected",
        "The folder on the source where rejected files are moved, with `<name>.erro.txt` "
        "saying why and how to fix it (F11).",
    ),
    "enabled": Key("bool", True, "false: the source is kept in the file but never polled."),
    "allow_private": Key(
        "bool",
        False,
        "Allow a host on a private, loopback or link-local address (refused by default, F3).",
    ),
}

ACCOUNT_KEYS: dict[str, Key] = {
    "channel": Key("choice", MISSING, "The channel this account sends on."),
    "rate": Key("float", None, "Messages per second (default: the channel's own).", minimum=0.001),
    "burst": Key(
        "int",
        None,
        "How many messages may leave at once after a quiet spell (the token bucket's size; "
        "default: the rate, at least 1).",
        minimum=1,
    ),
    "sandbox": Key("bool", False, help="Send to the local sink / outbox, never to people."),
    "concurrency": Key(
        "int",
        None,
        "Messages in flight at once (connections kept open for e-mail); default: the "
        "channel's own.",
        minimum=1,
        maximum=256,
    ),
    # the guard (D14, D15), in percent of the messages sent over 24 h
    "bounce_limit": Key(
        "float",
        5.0,
        "The guard pauses the account when hard bounces exceed this percentage of what it "
        "sent in the last 24 hours (D14).",
        minimum=0.0,
        maximum=100.0,
    ),
    "complaint_limit": Key(
        "float",
        0.1,
        "The guard pauses the account when complaints exceed this percentage of what it sent "
        "in the last 24 hours (D14).",
        minimum=0.0,
        maximum=100.0,
    ),
    "min_sample": Key(
        "int",
        200,
        "The guard judges the rates only once the account sent this many messages in 24 hours "
        "(D15).",
        minimum=1,
    ),
    "min_pause": Key(
        "duration",
        timedelta(hours=24),
        "How long the guard pauses an account over its limits (D14).",
    ),
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
    "secret": Key(
        "secret",
        help="Signs every link and token (HMAC-SHA256): 32 or more random bytes, e.g. "
        "`head -c 32 /dev/urandom | base64`.",
    ),
    "listen": Key(
        "str",
        "127.0.0.1:8080",
        help="host:port the tracking endpoint binds (put it behind your HTTPS reverse proxy).",
        check=check_listen,
    ),
    "open_tracking": Key("bool", True, "Add the open pixel to e-mails."),
    "click_tracking": Key("bool", True, "Wrap e-mail links so clicks are counted (D17)."),
    "ses_topics": Key(
        "strings", (), help="SNS topic ARNs whose SES notifications are accepted at /ses."
    ),
    "metrics_from": Key(
        "strings",
        ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"),
        help="Networks allowed to read /metrics (the client's address, not a header); a "
        "request carrying a reverse proxy's header (X-Forwarded-For, Forwarded, X-Real-IP, "
        "X-Forwarded-Host) is refused, wherever it comes from, unless it has the token.",
    ),
    "metrics_token": Key(
        "secret",
        None,
        help="A bearer token that reads /metrics from anywhere, through a proxy too "
        "(`Authorization: Bearer <token>`, compared in constant time); e.g. "
        "`head -c 32 /dev/urandom | base64 > metrics-token`.",
    ),
}

MAILBOX_KEYS: dict[str, Key] = {
    "host": Key("str", MISSING, "The IMAP server (a bare host name, F2)."),
    "port": Key(
        "int",
        None,
        "The IMAP port; default 993 with tls = implicit, 143 with starttls.",
        minimum=1,
        maximum=65535,
    ),
    "tls": Key(
        "choice",
        "implicit",
        "implicit: TLS from the first byte (993); starttls: upgrade a plain connection (143). "
        "The certificate and host name are always verified.",
        choices=("implicit", "starttls"),
    ),
    "ca_file": Key(
        "path",
        None,
        "A CA bundle (PEM) to trust instead of the system's, for a private CA.",
        target="file",
    ),
    "user": Key("str", MISSING, "The IMAP login."),
    "password": Key("secret", MISSING, "The IMAP password."),
    "folder": Key("str", "INBOX", help="Where bounces and complaints arrive."),
    "processed_folder": Key(
        "str",
        "disparo/handled",
        help="Where handled reports move; `/` marks hierarchy and is spelled with the "
        "server's own separator (`disparo.handled` on a Dovecot Maildir++ account).",
    ),
    "every": Key("duration", timedelta(minutes=2), "How often the mailbox is polled."),
    "allow_private": Key(
        "bool",
        False,
        "Allow a host on a private, loopback or link-local address (refused by default, F3).",
    ),
    "enabled": Key("bool", True, "false: the mailbox is kept in the file but never polled."),
    "timeout": Key(
        "duration",
        timedelta(seconds=30),
        "How long connecting and each IMAP command may take.",
    ),
}

TUI_KEYS: dict[str, Key] = {
    "export_folder": Key(
        "path",
        Path("exports"),
        "The only folder the terminal UI writes exports into (relative to the config file), "
        "under names disparo makes (`campaign-<id>-<YYYYmmdd-HHMMSS>.csv`); the operator may "
        "give a plain file name, never a path. Created (mode 700) when the first export is "
        "written. Over SSH this is on the server.",
        target="created",
    ),
}

TEMPLATE_KEYS: dict[str, Key] = {
    "content_sid": Key("str", help="The approved template's Content SID (HX…)."),
    "variables": Key("strings", (), help="Contact fields for {{1}}, {{2}}… in order."),
}

GROUP_KEYS: dict[str, Key] = {
    "url": Key(
        "secret",
        MISSING,
        "The group's feed (G1): `GET <url>&pagina=N` answers a page of JSON records "
        "(`nome`, `email`). The URL carries a token: a secret (F5, G3), never logged or "
        "shown in full.",
    ),
    "every": Key("duration", timedelta(hours=1), "How often `disparo run` syncs it (or `cron`)."),
    "cron": Key(
        "cron",
        None,
        "When `disparo run` syncs it, as a cron expression in engine.time_zone; instead of "
        "`every`.",
    ),
    "allow_private": Key(
        "bool",
        False,
        "Allow a feed on a private, loopback or link-local address (refused by default, F3).",
    ),
    "max_records": Key(
        "int",
        100_000,
        "A feed announcing more records than this fails the sync (G2).",
        minimum=1,
    ),
    "timeout": Key("duration", timedelta(seconds=30), "Per page request (connect and read)."),
    "max_page_bytes": Key(
        "int", 16 * 1024 * 1024, "A page larger than this fails the sync.", minimum=1024
    ),
    "ca_file": Key(
        "path",
        None,
        "A CA bundle (PEM) to trust instead of the system's, for a private CA. TLS is always "
        "verified.",
        target="file",
    ),
}

API_KEYS: dict[str, Key] = {
    "listen": Key(
        "str",
        "127.0.0.1:8081",
        help="host:port the send API binds (`disparo run`, `disparo api serve`); not the "
        "public tracking endpoint.",
        check=check_listen,
    ),
    "max_recipients": Key(
        "int", 10_000, "Recipients a POST may list inline (more: 413).", minimum=1
    ),
    "max_body_bytes": Key(
        "int", 8 * 1024 * 1024, "The largest request body accepted (more: 413).", minimum=1024
    ),
}

API_CLIENT_KEYS: dict[str, Key] = {
    "token": Key(
        "secret",
        MISSING,
        "The client system's bearer token (`token_file` or `token_env`); its campaigns' origin "
        "is `api:NAME`.",
    ),
}

WALLET_KEYS: dict[str, Key] = {
    "default_sender": Key("str", None, "The account ([accounts.NAME]) the wallet sends with."),
    "email_subject": Key(
        "str", None, "The e-mail subject when a file's name gives none (_te, N17)."
    ),
    "email_template": Key(
        "path",
        None,
        "The e-mail body (HTML, Jinja2 variables such as {{ nome }}) when a file comes "
        "without its <name>.html.",
        check=check_template_file,
        target="file",
    ),
    "sms_template": Key(
        "str",
        None,
        "The SMS text (Jinja2 variables such as {{ nome }}) when a file has no `mensagem` "
        "column (N28).",
        check=check_template_text,
    ),
    "from_name": Key("str", None, "The sender's display name in e-mails of this wallet."),
    "reply_to": Key("str", None, "The Reply-To address of e-mails of this wallet."),
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
    workers: int = 1
    worker_restarts: int = 5
    worker_restart_window: timedelta = timedelta(minutes=10)


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
    #: a bearer token that reads /metrics from anywhere (``metrics_token_file``)
    metrics_token: SecretRef | None = None


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
class TuiSettings:
    """The ``[tui]`` table: where the terminal UI may write files."""

    export_folder: Path


@dataclass(frozen=True)
class GroupSettings:
    """``[groups.NAME]``: a group fed by an HTTP endpoint (G1–G3)."""

    name: str
    url: SecretRef
    schedule: PollSchedule
    allow_private: bool
    max_records: int
    timeout: timedelta
    max_page_bytes: int
    ca_file: Path | None = None


@dataclass(frozen=True)
class ApiClient:
    """``[api.clients.NAME]``: a client system of the send API."""

    name: str
    token: SecretRef


@dataclass(frozen=True)
class ApiSettings:
    """``[api]``: the send API."""

    listen: str = "127.0.0.1:8081"
    max_recipients: int = 10_000
    max_body_bytes: int = 8 * 1024 * 1024
    clients: Mapping[str, ApiClient] = field(default_factory=dict)


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
    #: ``[tui]``; None means the defaults, resolved against ``root`` (``Config.tui_settings``)
    tui: TuiSettings | None = None
    groups: Mapping[str, GroupSettings] = field(default_factory=dict)
    api: ApiSettings = field(default_factory=ApiSettings)

    @property
    def tz(self) -> ZoneInfo:
        return self.engine.time_zone

    @property
    def export_folder(self) -> Path:
        """Where the terminal UI writes exports (``[tui] export_folder``, absolute)."""
        if self.tui is not None:
            return self.tui.export_folder
        return self.root / "exports"

    def wallet(self, code: str) -> WalletSettings:
        """The wallet's settings; a wallet absent from the file has none (all defaults)."""
        return self.wallets.get(code) or WalletSettings(code)

    def default_subject(self, wallet: str) -> str | None:
        """The wallet's default e-mail subject (N17)."""
        return self.wallet(wallet).email_subject
