"""Find, read and validate ``disparo.toml`` into a ``Config``; every problem at once."""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from engine.config.keys import ConfigError, ConfigProblem, Key, _Reader, _type_name
from engine.config.settings import (
    ACCOUNT_KEYS,
    API_CLIENT_KEYS,
    API_KEYS,
    CONFIG_NAME,
    DEFAULT_TIME_ZONE,
    ENGINE_KEYS,
    ENV_VAR,
    GROUP_KEYS,
    MAILBOX_KEYS,
    SOURCE_KEYS,
    TEMPLATE_KEYS,
    TRACKING_KEYS,
    TUI_KEYS,
    WALLET_KEYS,
    AccountSettings,
    ApiClient,
    ApiSettings,
    Config,
    EngineSettings,
    GroupSettings,
    MailboxSettings,
    PollSchedule,
    SourceSettings,
    TemplateSettings,
    TrackingSettings,
    TuiSettings,
    WalletSettings,
)
from engine.hosts import check_host_value, check_literal

if TYPE_CHECKING:
    from engine.plugins import Plugins

SECTIONS = (
    "engine",
    "sources",
    "accounts",
    "wallets",
    "tracking",
    "templates",
    "mailboxes",
    "tui",
    "groups",
    "api",
)
_WALLET_CODE = re.compile(r"(?:[^\W_]|[.\-])+")
_SECTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")


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


def plugin_keys(cls: type[Any] | None) -> Mapping[str, Key]:
    """A plugin class's own keys (``config_keys``), none for None."""
    return (getattr(cls, "config_keys", {}) or {}) if cls is not None else {}


def source_common_keys(plugins: Plugins, default_publish: tuple[str, ...]) -> dict[str, Key]:
    """The keys of every ``[sources.NAME]`` table, with the loaded kinds and formats."""
    return {
        **SOURCE_KEYS,
        "kind": replace(SOURCE_KEYS["kind"], choices=tuple(plugins.source_kinds())),
        "format": replace(SOURCE_KEYS["format"], choices=tuple(plugins.formats())),
        "publish": Key(
            "strings",
            default_publish,
            "Publishers writing results back to this source (default: the format's own).",
        ),
    }


def account_common_keys(plugins: Plugins) -> dict[str, Key]:
    """The keys of every ``[accounts.NAME]`` table, with the loaded channels."""
    return {
        **ACCOUNT_KEYS,
        "channel": replace(ACCOUNT_KEYS["channel"], choices=tuple(plugins.channels())),
    }


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
            import difflib  # on a problem only: not at every load

            close = difflib.get_close_matches(section, SECTIONS, n=1)
            hint = f"; did you mean [{close[0]}]?" if close else ""
            reader.problem(section, f"unknown section{hint} (sections: {', '.join(SECTIONS)})")

    raw_engine = data.get("engine", {})
    engine_values = reader.table("engine", raw_engine, ENGINE_KEYS)
    lease = engine_values.get("lease") or timedelta(seconds=30)
    engine = EngineSettings(
        time_zone=engine_values.get("time_zone") or ZoneInfo(DEFAULT_TIME_ZONE),
        database_url=_database_url(reader, engine_values.get("database_url")),
        database_password=engine_values.get("database_password"),
        spool_dir=_resolve(root, engine_values.get("spool_dir", Path("spool"))),
        role=engine_values.get("role", "operator"),
        log_level=engine_values.get("log_level", "info"),
        lease=lease,
        heartbeat=engine_values.get("heartbeat") or min(timedelta(seconds=5), lease / 3),
        stop_timeout=engine_values.get("stop_timeout") or timedelta(seconds=10),
        workers=engine_values.get("workers") or 1,
        worker_restarts=engine_values.get("worker_restarts") or 5,
        worker_restart_window=engine_values.get("worker_restart_window") or timedelta(minutes=10),
    )
    if engine.heartbeat * 3 > engine.lease:
        reader.problem(
            "engine.heartbeat",
            f"must be at most a third of engine.lease ({_seconds(engine.lease)}), so that a "
            "running engine renews its leases before they run out; got "
            f"{_seconds(engine.heartbeat)}",
        )

    kinds = plugins.source_kinds()
    formats = plugins.formats()
    publishers = plugins.publishers()
    sources: dict[str, SourceSettings] = {}
    raw_sources = _tables(reader, "sources", data.get("sources", {}))
    for name, raw in raw_sources.items():
        where = f"sources.{name}"
        if not isinstance(raw, dict):
            reader.problem(where, f"expected a table ([{where}]), got {_type_name(raw)}")
            continue
        kind_cls = kinds.get(raw.get("kind", ""))
        format_cls = formats.get(raw.get("format", "mailing"))
        default_publish = tuple(getattr(format_cls, "publishers", ()))
        named = raw.get("publish", default_publish)
        publisher_classes = [
            publishers[p]
            for p in (named if isinstance(named, list | tuple) else ())
            if p in publishers
        ]
        keys = {
            **source_common_keys(plugins, default_publish),
            # the format's and the publishers' own keys live in the source's table too
            **plugin_keys(format_cls),
            **{k: v for cls in publisher_classes for k, v in plugin_keys(cls).items()},
            **plugin_keys(kind_cls),
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
        cron = values.get("cron")
        if cron is None and "every" not in raw and format_cls is not None:
            cron = getattr(format_cls, "default_cron", None)  # T6: a triplet source, hourly
        schedule = PollSchedule(every=None if cron else values.get("every"), cron=cron)
        for i, p in enumerate(values.get("publish", ())):
            if p not in publishers:
                known = ", ".join(sorted(publishers)) or "none installed"
                reader.problem(
                    f"{where}.publish[{i}]", f"unknown publisher `{p}` (publishers: {known})"
                )
        common = set(SOURCE_KEYS) | {"publish"}
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
            publish=tuple(p for p in values.get("publish", ()) if p in publishers),
        )
        host = sources[name].options.get("host")
        if host is not None:  # the host rules, for every kind that reaches a server (F2, F3)
            problem = check_host_value(str(host)) or check_literal(
                str(host).strip(), sources[name].allow_private
            )
            if problem:
                reader.problem(f"{where}.host", problem)
        # checks across keys: the kind's, the format's and the publishers' own
        for cls in (kind_cls, format_cls, *publisher_classes):
            validate = getattr(cls, "validate_settings", None)
            if validate is not None:
                for key, message in validate(sources[name]):
                    reader.problem(f"{where}.{key}", message)
        check = getattr(format_cls, "check_settings", None)
        if check is not None:  # the format's keys, against the accounts declared
            for key, message in check(sources[name], _declared_channels(data)):
                reader.problem(f"{where}.{key}", message)

    channels = plugins.channels()
    accounts: dict[str, AccountSettings] = {}
    for name, raw in _tables(reader, "accounts", data.get("accounts", {})).items():
        where = f"accounts.{name}"
        if not isinstance(raw, dict):
            reader.problem(where, f"expected a table ([{where}]), got {_type_name(raw)}")
            continue
        channel_cls = channels.get(raw.get("channel", ""))
        keys = {**account_common_keys(plugins), **plugin_keys(channel_cls)}
        if channel_cls is None:
            keys = {"channel": keys["channel"]}
            raw = {"channel": raw["channel"]} if "channel" in raw else {}
        values = reader.table(where, raw, keys)
        if channel_cls is None:
            continue
        rate = float(values.get("rate") or channel_cls.default_rate)
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
            breaker_failures=int(values.get("breaker_failures", 5)),
            breaker_pause=values.get("breaker_pause") or timedelta(minutes=1),
            breaker_max_pause=values.get("breaker_max_pause") or timedelta(minutes=15),
        )
        if accounts[name].breaker_max_pause < accounts[name].breaker_pause:
            reader.problem(
                f"{where}.breaker_max_pause",
                f"must be at least breaker_pause ({_seconds(accounts[name].breaker_pause)}); "
                f"got {_seconds(accounts[name].breaker_max_pause)}",
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
                metrics_token=values.get("metrics_token"),
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

    tui_values = reader.table("tui", data.get("tui", {}), TUI_KEYS)
    tui = TuiSettings(
        export_folder=_resolve(root, tui_values.get("export_folder", Path("exports")))
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

    groups: dict[str, GroupSettings] = {}
    for name, raw in _tables(reader, "groups", data.get("groups", {})).items():
        where = f"groups.{name}"
        values = reader.table(where, raw, GROUP_KEYS)
        if "url" not in values:
            continue
        if "every" in raw and "cron" in raw:
            reader.problem(f"{where}.cron", "give `every` or `cron`, not both")
        groups[name] = GroupSettings(
            name=name,
            url=values["url"],
            schedule=PollSchedule(
                every=None if values.get("cron") else (values.get("every") or timedelta(hours=1)),
                cron=values.get("cron"),
            ),
            allow_private=values.get("allow_private", False),
            max_records=int(values.get("max_records", 100_000)),
            timeout=values.get("timeout") or timedelta(seconds=30),
            max_page_bytes=int(values.get("max_page_bytes", 16 * 1024 * 1024)),
            ca_file=values.get("ca_file"),
        )

    api = ApiSettings()
    if "api" in data:
        raw_api = data["api"]
        raw_clients = raw_api.get("clients", {}) if isinstance(raw_api, dict) else {}
        plain = (
            {k: v for k, v in raw_api.items() if k != "clients"}
            if isinstance(raw_api, dict)
            else raw_api
        )
        values = reader.table("api", plain, API_KEYS)
        clients: dict[str, ApiClient] = {}
        for name, raw in _tables(reader, "api.clients", raw_clients).items():
            client = reader.table(f"api.clients.{name}", raw, API_CLIENT_KEYS)
            if "token" in client:
                clients[name] = ApiClient(name, client["token"])
        api = ApiSettings(
            listen=values.get("listen", "127.0.0.1:8081"),
            max_recipients=int(values.get("max_recipients", 10_000)),
            max_body_bytes=int(values.get("max_body_bytes", 8 * 1024 * 1024)),
            clients=MappingProxyType(clients),
        )

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
        tui=tui,
        groups=MappingProxyType(groups),
        api=api,
    )


def _declared_channels(data: Mapping[str, Any]) -> dict[str, str]:
    """The accounts the file declares, with their channel (before they are checked)."""
    declared = data.get("accounts", {})
    if not isinstance(declared, dict):
        return {}
    return {
        str(name): str(table.get("channel", ""))
        for name, table in declared.items()
        if isinstance(table, dict)
    }


def _seconds(value: timedelta) -> str:
    return f"{value.total_seconds():g} s"


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
