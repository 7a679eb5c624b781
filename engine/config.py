"""``disparo.toml``: find it, read and validate it, and write the commented starter file.

One TOML file holds the engine settings, the sources, the sender accounts and the wallets.
Every problem names the file, the key and what was expected. Secrets are references only
(``password_env = "VAR"`` or ``password_file = "path"``, F5): a secret written in clear is
refused, and a ``SecretRef`` never shows its value.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import secrets
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import tomli_w

from engine.hosts import check_host_value, check_literal

if TYPE_CHECKING:
    from engine.plugins import Plugins

CONFIG_NAME = "disparo.toml"
ENV_VAR = "DISPARO_CONFIG"
DEFAULT_TIME_ZONE = "America/Sao_Paulo"
ROLES = ("viewer", "operator", "admin")
SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "secret",
        "token",
        "auth_token",
        "api_key",
        "apikey",
        "passphrase",
        "private_key",
        "signing_secret",
    }
)


class _Missing:
    def __repr__(self) -> str:
        return "required"


MISSING: Any = _Missing()


# --------------------------------------------------------------------------------------------
# Problems


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong in the file: where (file and dotted key) and what was expected."""

    file: str
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.key}" if self.key else self.file
        return f"{where}: {self.message}"


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` lists everything found at once."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


# --------------------------------------------------------------------------------------------
# Secrets


class SecretError(Exception):
    """A referenced secret cannot be read (the message never contains a secret)."""


@dataclass(frozen=True, repr=False)
class SecretRef:
    """A reference to a secret: an environment variable or a file. Never holds the value."""

    key: str
    env: str | None = None
    file: Path | None = None

    def describe(self) -> str:
        return f"environment variable {self.env}" if self.env else f"file {self.file}"

    def reveal(self) -> str:
        """Read the secret now (from the environment or the file), without trailing newline."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise SecretError(
                    f"`{self.key}_env` names the environment variable {self.env}, which is "
                    f"not set; export it before starting disparo"
                )
            return value
        assert self.file is not None
        try:
            return self.file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise SecretError(
                f"`{self.key}_file` names {self.file}, which cannot be read "
                f"({exc.strerror or exc}); check the path and its permissions"
            ) from None

    def __repr__(self) -> str:
        return f"SecretRef({self.key}: {self.describe()})"


# --------------------------------------------------------------------------------------------
# Keys


@dataclass(frozen=True)
class Key:
    """The rule for one key of a table.

    ``kind`` is one of: ``str``, ``int``, ``float``, ``bool``, ``path`` (relative to the
    config file), ``duration`` (``"90s"``, ``"2m"``, ``"1h30m"`` or seconds), ``secret``
    (written as ``<key>_env`` or ``<key>_file``), ``choice``, ``zone``, ``cron``,
    ``strings`` (a list of strings) and ``table`` (a table of strings).
    """

    kind: str
    default: Any = MISSING
    help: str = ""
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    check: Callable[[Any], str | None] | None = None

    @property
    def required(self) -> bool:
        return self.default is MISSING


_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def parse_duration(value: object) -> timedelta | None:
    """``"2m"``, ``"1h30m"``, ``"45s"`` or a number of seconds -> timedelta (None if invalid)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return timedelta(seconds=value) if value > 0 else None
    if not isinstance(value, str) or not value.strip():
        return None
    match = _DURATION.fullmatch(value.strip().lower())
    if not match or not any(match.groups()):
        return None
    h, m, s = (int(g) if g else 0 for g in match.groups())
    total = timedelta(hours=h, minutes=m, seconds=s)
    return total if total > timedelta(0) else None


def _type_name(value: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


@dataclass
class _Reader:
    file: str
    root: Path
    problems: list[ConfigProblem] = field(default_factory=list)

    def problem(self, key: str, message: str) -> None:
        self.problems.append(ConfigProblem(self.file, key, message))

    def table(self, where: str, raw: object, keys: Mapping[str, Key]) -> dict[str, Any]:
        """Validate one table against ``keys``; return the values with defaults filled in."""
        out: dict[str, Any] = {}
        if not isinstance(raw, dict):
            self.problem(where, f"expected a table ([{where}]), got {_type_name(raw)}")
            return out
        secrets = {name for name, key in keys.items() if key.kind == "secret"}
        for name, value in raw.items():
            dotted = f"{where}.{name}"
            base, _, suffix = name.rpartition("_")
            if suffix in ("env", "file") and base in secrets:
                if base in out:
                    self.problem(dotted, f"give `{base}_env` or `{base}_file`, not both")
                    continue
                if not isinstance(value, str) or not value.strip():
                    what = "variable name" if suffix == "env" else "file path"
                    self.problem(dotted, f"expected a {what} (a non-empty string)")
                    continue
                if suffix == "env":
                    out[base] = SecretRef(base, env=value.strip())
                else:
                    out[base] = SecretRef(base, file=self._path(value))
                continue
            if name in secrets or (name not in keys and name.lower() in SECRET_WORDS):
                self.problem(
                    dotted,
                    "secrets are never written in the configuration (F5); write "
                    f'`{name}_env = "ENV_VAR_NAME"` or `{name}_file = "path/to/file"` instead',
                )
                continue
            key = keys.get(name)
            if key is None:
                close = difflib.get_close_matches(name, list(keys) + [f"{s}_env" for s in secrets])
                hint = f"; did you mean `{close[0]}`?" if close else ""
                known = ", ".join(sorted(keys))
                self.problem(dotted, f"unknown key{hint} (known keys: {known})")
                continue
            converted = self.value(dotted, value, key)
            if converted is not MISSING:
                out[name] = converted
        for name, key in keys.items():
            if name in out:
                continue
            if key.required:
                how = f"`{name}_env` or `{name}_file`" if key.kind == "secret" else f"`{name}`"
                self.problem(f"{where}.{name}", f"missing: {how} is required. {key.help}".strip())
            else:
                out[name] = key.default
        return out

    def _path(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.root / path

    def value(self, dotted: str, value: object, key: Key) -> Any:
        kind = key.kind
        if kind == "bool":
            if isinstance(value, bool):
                return value
            return self._bad(dotted, "true or false", value)
        if kind == "int":
            if isinstance(value, int) and not isinstance(value, bool):
                return self._bounded(dotted, value, key)
            return self._bad(dotted, "an integer", value)
        if kind == "float":
            if isinstance(value, int | float) and not isinstance(value, bool):
                return self._bounded(dotted, float(value), key)
            return self._bad(dotted, "a number", value)
        if kind == "duration":
            parsed = parse_duration(value)
            if parsed is None:
                return self._bad(dotted, 'a duration such as "90s", "2m" or "1h30m"', value)
            return parsed
        if kind == "strings":
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return tuple(value)
            return self._bad(dotted, "a list of strings", value)
        if kind == "table":
            if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
                return MappingProxyType(dict(value))
            return self._bad(dotted, "a table of strings", value)
        if not isinstance(value, str):
            return self._bad(dotted, "a string", value)
        if kind == "str":
            if not value.strip():
                return self._bad(dotted, "a non-empty string", value)
            result: Any = value
        elif kind == "path":
            if not value.strip():
                return self._bad(dotted, "a path", value)
            result = self._path(value)
        elif kind == "choice":
            if value not in key.choices:
                close = difflib.get_close_matches(value, key.choices, n=1)
                hint = f" (did you mean `{close[0]}`?)" if close else ""
                options = ", ".join(key.choices) or "(none installed)"
                self.problem(dotted, f"expected one of {options}; got `{value}`{hint}")
                return MISSING
            result = value
        elif kind == "zone":
            try:
                result = ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                return self._bad(dotted, "an IANA time zone such as America/Sao_Paulo", value)
        elif kind == "cron":
            from croniter import croniter

            if not croniter.is_valid(value):
                return self._bad(dotted, 'a cron expression such as "0 * * * *"', value)
            result = value
        else:  # pragma: no cover - a programming error in a Key table
            raise ValueError(f"unknown key kind {kind!r}")
        if key.check is not None:
            message = key.check(result)
            if message:
                self.problem(dotted, message)
                return MISSING
        return result

    def _bounded(self, dotted: str, value: float, key: Key) -> Any:
        if key.minimum is not None and value < key.minimum:
            return self._bad(dotted, f"at least {key.minimum:g}", value)
        if key.maximum is not None and value > key.maximum:
            return self._bad(dotted, f"at most {key.maximum:g}", value)
        return value

    def _bad(self, dotted: str, expected: str, value: object) -> Any:
        shown = value if not isinstance(value, str) else f'"{value}"'
        self.problem(dotted, f"expected {expected}; got {shown}")
        return MISSING


# --------------------------------------------------------------------------------------------
# Sections

ENGINE_KEYS: dict[str, Key] = {
    "time_zone": Key("zone", ZoneInfo(DEFAULT_TIME_ZONE), "Times are shown in this zone."),
    "database_url": Key("str", None, "Default: SQLite file disparo.db beside the config."),
    "database_password": Key("secret", None),
    "spool_dir": Key("path", Path("spool")),
    "role": Key("choice", "operator", choices=ROLES),
    "lease": Key(
        "duration",
        timedelta(minutes=5),
        help="How long a claimed delivery is reserved for its engine (D12).",
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
    "rate": Key("float", 10.0, minimum=0.001),
    "burst": Key("int", None, minimum=1),
    "sandbox": Key("bool", False, help="Send to the local sink / outbox, never to people."),
    "concurrency": Key("int", None, minimum=1, maximum=256),
    # the guard (D14, D15), in percent of the messages sent over 24 h
    "bounce_limit": Key("float", 5.0, minimum=0.0, maximum=100.0),
    "complaint_limit": Key("float", 0.1, minimum=0.0, maximum=100.0),
    "min_sample": Key("int", 200, minimum=1),
    "min_pause": Key("duration", timedelta(hours=24)),
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

SECTIONS = ("engine", "sources", "accounts", "wallets", "tracking", "templates", "mailboxes")
_WALLET_CODE = re.compile(r"(?:[^\W_]|[.\-])+")
_SECTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")


class Configurable:
    """Mixin for plugin classes with their own keys in a config table.

    A source kind or channel class sets ``config_keys``; they are validated together with
    the common keys of its table and handed back in ``options``.
    """

    config_keys: ClassVar[Mapping[str, Key]] = {}


@dataclass(frozen=True)
class Schedule:
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
    lease: timedelta = timedelta(minutes=5)


@dataclass(frozen=True)
class SourceSettings:
    name: str
    kind: str
    format: str
    schedule: Schedule
    stable_listings: int
    processed_dir: str
    rejected_dir: str
    enabled: bool
    allow_private: bool
    #: the kind's own keys (host, path, user, password…), validated by its ``config_keys``
    options: Mapping[str, Any]


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


def _default_database_url(root: Path) -> str:
    return f"sqlite:///{(root / 'disparo.db').as_posix()}"


def _database_url(reader: _Reader, value: str | None) -> str:
    if value is None:
        return _default_database_url(reader.root)
    url = value.strip()
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = Path(url[len("sqlite:///") :])
        if not path.is_absolute():
            url = f"sqlite:///{(reader.root / path).as_posix()}"
        return url
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if not url.startswith(("postgresql+psycopg://", "sqlite://")):
        reader.problem(
            "engine.database_url",
            'expected "sqlite:///path/to/disparo.db" or "postgresql://user@host/db"; '
            f'got "{value}"',
        )
        return _default_database_url(reader.root)
    if re.match(r"^[a-z+]+://[^/@]*:[^/@]*@", url):
        reader.problem(
            "engine.database_url",
            "the URL carries a password; secrets are never written in the configuration (F5): "
            'remove it from the URL and add `database_password_env = "ENV_VAR_NAME"`',
        )
    return url


def _plugin_keys(cls: type[Any]) -> Mapping[str, Key]:
    return getattr(cls, "config_keys", {}) or {}


def _check_names(reader: _Reader, section: str, tables: dict[str, Any]) -> None:
    for name in tables:
        if not _SECTION_NAME.fullmatch(name):
            reader.problem(
                f"{section}.{name}",
                "names are letters, digits, '-', '_' and '.', starting with a letter or digit",
            )


def parse_config(data: Mapping[str, Any], *, file: str, root: Path, plugins: Plugins) -> Config:
    """Validate the parsed TOML ``data``; raise ``ConfigError`` listing every problem."""
    reader = _Reader(file, root)
    for section in data:
        if section not in SECTIONS:
            close = difflib.get_close_matches(section, SECTIONS, n=1)
            hint = f"; did you mean [{close[0]}]?" if close else ""
            reader.problem(section, f"unknown section{hint} (sections: {', '.join(SECTIONS)})")

    raw_engine = data.get("engine", {})
    engine_values = reader.table("engine", raw_engine, ENGINE_KEYS)
    engine = EngineSettings(
        time_zone=engine_values.get("time_zone") or ZoneInfo(DEFAULT_TIME_ZONE),
        database_url=_database_url(reader, engine_values.get("database_url")),
        database_password=engine_values.get("database_password"),
        spool_dir=_resolve(root, engine_values.get("spool_dir", Path("spool"))),
        role=engine_values.get("role", "operator"),
        log_level=engine_values.get("log_level", "info"),
        lease=engine_values.get("lease") or timedelta(minutes=5),
    )

    kinds = plugins.source_kinds()
    formats = plugins.formats()
    sources: dict[str, SourceSettings] = {}
    raw_sources = _tables(reader, "sources", data.get("sources", {}))
    for name, raw in raw_sources.items():
        where = f"sources.{name}"
        if not isinstance(raw, dict):
            reader.problem(where, f"expected a table ([{where}]), got {_type_name(raw)}")
            continue
        kind_cls = kinds.get(raw.get("kind", ""))
        keys = {
            **SOURCE_KEYS,
            "kind": Key("choice", MISSING, choices=tuple(kinds)),
            "format": Key("choice", "mailing", choices=tuple(formats)),
            **(_plugin_keys(kind_cls) if kind_cls else {}),
        }
        if kind_cls is None:
            # Without a known kind, its own keys cannot be checked: report only the kind.
            keys = {k: v for k, v in keys.items() if k == "kind"}
            raw = {"kind": raw["kind"]} if "kind" in raw else {}
        values = reader.table(where, raw, keys)
        if kind_cls is None:
            continue
        if "every" in raw and "cron" in raw:
            reader.problem(f"{where}.cron", "give `every` or `cron`, not both")
        schedule = Schedule(
            every=None if values.get("cron") else values.get("every"), cron=values.get("cron")
        )
        common = set(SOURCE_KEYS)
        sources[name] = SourceSettings(
            name=name,
            kind=values.get("kind", ""),
            format=values.get("format", "mailing"),
            schedule=schedule,
            stable_listings=values.get("stable_listings", 2),
            processed_dir=values.get("processed_dir", "processed"),
            rejected_dir=values.get("rejected_dir", "rejected"),
            enabled=values.get("enabled", True),
            allow_private=values.get("allow_private", False),
            options=MappingProxyType({k: v for k, v in values.items() if k not in common}),
        )
        validate = getattr(kind_cls, "validate_settings", None)
        if validate is not None:
            for key, message in validate(sources[name]):
                reader.problem(f"{where}.{key}", message)

    channels = plugins.channels()
    accounts: dict[str, AccountSettings] = {}
    for name, raw in _tables(reader, "accounts", data.get("accounts", {})).items():
        where = f"accounts.{name}"
        if not isinstance(raw, dict):
            reader.problem(where, f"expected a table ([{where}]), got {_type_name(raw)}")
            continue
        channel_cls = channels.get(raw.get("channel", ""))
        keys = {
            **ACCOUNT_KEYS,
            "channel": Key("choice", MISSING, choices=tuple(channels)),
            **(_plugin_keys(channel_cls) if channel_cls else {}),
        }
        if channel_cls is None:
            keys = {"channel": keys["channel"]}
            raw = {"channel": raw["channel"]} if "channel" in raw else {}
        values = reader.table(where, raw, keys)
        if channel_cls is None:
            continue
        rate = float(values.get("rate", 10.0))
        burst = values.get("burst") or max(1, round(rate))
        common = set(ACCOUNT_KEYS)
        accounts[name] = AccountSettings(
            name=name,
            channel=values.get("channel", ""),
            rate=rate,
            burst=int(burst),
            options=MappingProxyType({k: v for k, v in values.items() if k not in common}),
            sandbox=bool(values.get("sandbox", False)),
            concurrency=values.get("concurrency"),
            bounce_limit=float(values.get("bounce_limit", 5.0)),
            complaint_limit=float(values.get("complaint_limit", 0.1)),
            min_sample=int(values.get("min_sample", 200)),
            min_pause=values.get("min_pause") or timedelta(hours=24),
        )
        validate = getattr(channel_cls, "validate_account", None)
        if validate is not None:
            for key, message in validate(accounts[name]):
                reader.problem(f"{where}.{key}", message)

    tracking = None
    if "tracking" in data:
        values = reader.table("tracking", data["tracking"], TRACKING_KEYS)
        url = str(values.get("public_url", ""))
        if url and not url.startswith(("https://", "http://")):
            reader.problem(
                "tracking.public_url", f'expected "https://track.example.com"; got "{url}"'
            )
        if "secret" in values and "public_url" in values:
            tracking = TrackingSettings(
                public_url=url.rstrip("/"),
                secret=values["secret"],
                listen=values.get("listen", "127.0.0.1:8080"),
                open_tracking=values.get("open_tracking", True),
                click_tracking=values.get("click_tracking", True),
                ses_topics=tuple(values.get("ses_topics", ())),
                metrics_from=tuple(values.get("metrics_from", TrackingSettings.metrics_from)),
            )
        for i, network in enumerate(values.get("metrics_from", ())):
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                reader.problem(
                    f"tracking.metrics_from[{i}]",
                    f'expected a network such as "10.0.0.0/8" or "127.0.0.1"; got "{network}"',
                )
        for i, arn in enumerate(values.get("ses_topics", ())):
            if not re.fullmatch(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[\w-]+", arn):
                reader.problem(
                    f"tracking.ses_topics[{i}]",
                    f'expected an SNS topic ARN such as "arn:aws:sns:us-east-1:123456789012:'
                    f'ses-bounces"; got "{arn}"',
                )

    mailboxes: dict[str, MailboxSettings] = {}
    for name, raw in _tables(reader, "mailboxes", data.get("mailboxes", {})).items():
        where = f"mailboxes.{name}"
        values = reader.table(where, raw, MAILBOX_KEYS)
        if not all(k in values for k in ("host", "user", "password")):
            continue
        problem = check_host_value(str(values["host"])) or check_literal(
            str(values["host"]).strip(), bool(values.get("allow_private", False))
        )
        if problem:
            reader.problem(f"{where}.host", problem.replace("sources may", "mailboxes may"))
        if tracking is None:
            reader.problem(
                where,
                "a bounce mailbox needs [tracking] (its `secret` signs the VERP return path and "
                "the Message-ID that map a bounce back to its delivery); add a [tracking] "
                "section with `public_url` and `secret_file`",
            )
        tls = values.get("tls", "implicit")
        mailboxes[name] = MailboxSettings(
            name=name,
            host=values["host"],
            port=values.get("port") or (993 if tls == "implicit" else 143),
            tls=tls,
            user=values["user"],
            password=values["password"],
            folder=values.get("folder", "INBOX"),
            processed_folder=values.get("processed_folder", "disparo/handled"),
            every=values.get("every") or timedelta(minutes=2),
            allow_private=values.get("allow_private", False),
            enabled=values.get("enabled", True),
            timeout=values.get("timeout") or timedelta(seconds=30),
            ca_file=values.get("ca_file"),
        )

    templates: dict[str, TemplateSettings] = {}
    for template, raw in _tables(reader, "templates", data.get("templates", {})).items():
        values = reader.table(f"templates.{template}", raw, TEMPLATE_KEYS)
        if "content_sid" in values:
            templates[template] = TemplateSettings(
                template, values["content_sid"], tuple(values.get("variables", ()))
            )

    wallets: dict[str, WalletSettings] = {}
    for code, raw in _tables(reader, "wallets", data.get("wallets", {})).items():
        where = f"wallets.{code}"
        if not _WALLET_CODE.fullmatch(code):
            reader.problem(where, "a wallet code is letters, digits, '-' and '.' (N13)")
            continue
        values = reader.table(where, raw, WALLET_KEYS)
        sender = values.get("default_sender")
        declared = data.get("accounts", {})
        if sender is not None and isinstance(declared, dict) and sender not in declared:
            known = ", ".join(sorted(declared)) or "none configured"
            reader.problem(
                f"{where}.default_sender",
                f"names the account `{sender}`, which is not in [accounts] (accounts: {known})",
            )
        wallets[code] = WalletSettings(code=code, **values)

    if reader.problems:
        raise ConfigError(reader.problems)
    return Config(
        path=None if file == "(defaults)" else Path(file),
        root=root,
        engine=engine,
        sources=MappingProxyType(sources),
        accounts=MappingProxyType(accounts),
        wallets=MappingProxyType(wallets),
        raw=MappingProxyType(dict(data)),
        tracking=tracking,
        templates=MappingProxyType(templates),
        mailboxes=MappingProxyType(mailboxes),
    )


def _resolve(root: Path, path: Path) -> Path:
    return path if path.is_absolute() else root / path


def _tables(reader: _Reader, section: str, raw: object) -> dict[str, Any]:
    if not isinstance(raw, dict):
        reader.problem(section, f"expected tables such as [{section}.NAME]")
        return {}
    _check_names(reader, section, raw)
    return raw


# --------------------------------------------------------------------------------------------
# Finding and loading


def find_config(explicit: Path | None = None, *, cwd: Path | None = None) -> Path | None:
    """``--config``, else ``$DISPARO_CONFIG``, else ``./disparo.toml`` if it exists."""
    if explicit is not None:
        return explicit
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    candidate = (cwd or Path.cwd()) / CONFIG_NAME
    return candidate if candidate.is_file() else None


def load_config(path: Path | None, *, plugins: Plugins | None = None) -> Config:
    """Read and validate ``path``; with None, the built-in defaults (current folder)."""
    if plugins is None:
        from engine.plugins import load_plugins

        plugins = load_plugins()
    if path is None:
        return parse_config({}, file="(defaults)", root=Path.cwd(), plugins=plugins)
    shown = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [ConfigProblem(shown, "", "file not found; create one with `disparo init`")]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigProblem(shown, "", f"cannot be read: {exc}")]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([ConfigProblem(shown, "", f"is not valid TOML: {exc}")]) from None
    return parse_config(data, file=shown, root=path.resolve().parent, plugins=plugins)


# --------------------------------------------------------------------------------------------
# The starter file (`disparo init`)


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
            "disparo configuration. Reference: the Configuration section of the README.\n"
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
