"""The configuration reference (``docs/configuration.md``), made from the very key tables the
reader checks a file against: the engine's sections (``engine.config.settings``) and the
``config_keys`` of every loaded plugin (source kinds, formats, publishers, channels). So the
reference cannot drift from the code: a test compares the committed file with this output.

``python -m engine.config.reference [FILE]`` writes it (disparo's own plugins only, whatever
else is installed); ``--check`` exits 1 when FILE differs. ``disparo config reference``
prints it with the plugins this installation loads.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from engine.config.keys import MISSING, PATH_TARGETS, Key
from engine.config.reader import account_common_keys, plugin_keys, source_common_keys
from engine.config.settings import (
    API_CLIENT_KEYS,
    API_KEYS,
    CONFIG_NAME,
    ENGINE_KEYS,
    ENV_VAR,
    GROUP_KEYS,
    MAILBOX_KEYS,
    TEMPLATE_KEYS,
    TRACKING_KEYS,
    TUI_KEYS,
    WALLET_KEYS,
)
from engine.plugins import Plugins, builtin_plugins

#: where the repository keeps it
DEFAULT_OUTPUT = Path("docs/configuration.md")
REGENERATE = "python -m engine.config.reference docs/configuration.md"


def duration_text(value: timedelta) -> str:
    """``timedelta(hours=1, minutes=30)`` -> ``1h30m``, as the file writes durations."""
    seconds = int(value.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return text + (f"{seconds}s" if seconds or not text else "")


class Described(str):
    """A default the reference says in words (it depends on other keys or on a plugin)."""


def default_text(key: Key) -> str:
    """The default as it would be written in the file; ``required`` or ``—`` (none)."""
    value = key.default
    if isinstance(value, Described):
        return str(value)
    if value is MISSING:
        return "**required**"
    if value is None:
        return "—"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, int | float):
        return f"`{value:g}`" if isinstance(value, float) else f"`{value}`"
    if isinstance(value, timedelta):
        return f'`"{duration_text(value)}"`'
    if isinstance(value, ZoneInfo):
        return f'`"{value.key}"`'
    if isinstance(value, Path):
        return f'`"{value.as_posix()}"`'
    if isinstance(value, tuple | list):
        return "`[" + ", ".join(f'"{v}"' for v in value) + "]`"
    return f'`"{value}"`'


def kind_text(key: Key) -> str:
    """What a value of this key looks like."""
    kind = key.kind
    if kind in ("int", "float"):
        name = "integer" if kind == "int" else "number"
        low = f"{key.minimum:g}" if key.minimum is not None else None
        high = f"{key.maximum:g}" if key.maximum is not None else None
        if low and high:
            return f"{name}, {low}–{high}"
        if low:
            return f"{name}, ≥ {low}"
        return f"{name}, ≤ {high}" if high else name
    if kind == "choice":
        return "one of " + ", ".join(f"`{c}`" for c in key.choices) if key.choices else "choice"
    if kind == "path":
        return f"path: {PATH_TARGETS[key.target]}"
    return {
        "str": "text",
        "bool": "`true` or `false`",
        "duration": 'duration (`"90s"`, `"2m"`, `"1h30m"`)',
        "secret": "secret: `_env` or `_file` (mode 600)",
        "zone": "IANA time zone",
        "cron": "cron expression",
        "strings": "list of text",
        "table": "table of text",
        "section": "table: the keys below",
    }.get(kind, kind)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def key_table(keys: Mapping[str, Key]) -> list[str]:
    """A Markdown table: key, kind, default, what it does (a secret as ``<key>_env`` /
    ``<key>_file``)."""
    lines = ["| key | kind | default | what it does |", "|---|---|---|---|"]
    for name, key in _flat(keys):
        shown = f"`{name}_env` / `{name}_file`" if key.kind == "secret" else f"`{name}`"
        lines.append(
            f"| {shown} | {_cell(kind_text(key))} | {default_text(key)} | {_cell(key.help)} |"
        )
    return lines


def _flat(keys: Mapping[str, Key], prefix: str = "") -> Iterable[tuple[str, Key]]:
    """Every key, a section's own keys after it as ``section.key``."""
    for name, key in keys.items():
        yield prefix + name, key
        if key.keys is not None:
            yield from _flat(key.keys, f"{prefix}{name}.")


def _doc(cls: type[Any]) -> str:
    """The first paragraph of a plugin class's docstring, on one line."""
    text = (cls.__doc__ or "").strip().split("\n\n", 1)[0]
    return " ".join(text.split())


def _grouped(classes: Mapping[str, type[Any]]) -> list[tuple[list[str], Mapping[str, Key]]]:
    """Names sharing the same keys, together (the Twilio channels share theirs)."""
    groups: list[tuple[list[str], Mapping[str, Key]]] = []
    for name, cls in classes.items():
        keys = plugin_keys(cls)
        for names, known in groups:
            if dict(known) == dict(keys):
                names.append(name)
                break
        else:
            groups.append(([name], keys))
    return groups


def _plugin_sections(word: str, classes: Mapping[str, type[Any]], none: str) -> Iterable[list[str]]:
    for names, keys in _grouped(classes):
        title = f"{word} = " + ", ".join(f'"{n}"' for n in names)
        lines = [f"### {title}", ""]
        lines += [f"- `{n}`: {_doc(classes[n])}" for n in names if _doc(classes[n])]
        lines.append("")
        lines += key_table(keys) if keys else [none]
        lines.append("")
        yield lines


INTRO = f"""\
# Configuration reference

<!-- Generated from the key tables the configuration reader uses: do not edit by hand.
     Regenerate with `{REGENERATE}`; a test fails when this file differs. -->

disparo reads one TOML file: `--config FILE`, else `${ENV_VAR}`, else `./{CONFIG_NAME}`;
without one, the built-in defaults apply. `disparo init` writes a commented starter file,
and `disparo config check` checks a file completely without starting anything.

- **Every problem is reported at once**, one line each: the file, the key, what is wrong and
  the fix (`disparo.toml: tracking.secret_file: /srv/disparo/secrets/tracking.key is open to
  other users (mode 0644); a secret must be readable by its owner only: run `chmod 600 …``).
- **Paths** are relative to the folder of the configuration file. Every file and folder the
  configuration names is checked when it is loaded (by every command, `disparo run` and a
  reload alike): it must exist and be readable by the user disparo runs as, unless the key
  says disparo makes it (a spool, an outbox).
- **Secrets** are never written in the file (F5): a secret key `password` is given as
  `password_env = "VARIABLE"` (an environment variable) or `password_file = "path"` (a file
  holding only the secret; a trailing newline is ignored). A secret file must be readable by
  its owner only (`chmod 600`, as `ssh` wants of a private key): one that the group or other
  users can read is refused. `disparo run` also checks, before it starts, that every
  environment variable named is set.
- **Durations** are `"90s"`, `"2m"`, `"1h30m"` or a number of seconds.
- A key not listed here is refused, with the closest known key suggested.
"""


def render_reference(plugins: Plugins) -> str:
    """The whole reference, for the plugins loaded in ``plugins``."""
    kinds = plugins.source_kinds()
    formats = plugins.formats()
    publishers = plugins.publishers()
    channels = plugins.channels()
    out = [INTRO]

    out += ["## [engine]", "", "The engine: time zone, database, spool, logs.", ""]
    out += [*key_table(ENGINE_KEYS), ""]

    out += [
        "## [sources.NAME]",
        "",
        "Where mailing files come from, one table per source. The keys of every source, then "
        "each kind's own, its format's and its publishers' (all in the same table).",
        "",
    ]
    common = source_common_keys(plugins, ())
    common["publish"] = replace(common["publish"], default=Described("the format's own"))
    out += [*key_table(common), ""]
    for lines in _plugin_sections("kind", kinds, "No keys of its own."):
        out += lines
    for lines in _plugin_sections("format", formats, "No keys of its own."):
        out += lines
    if publishers:
        for lines in _plugin_sections("publish", publishers, "No keys of its own."):
            out += lines
    else:
        out += ["No publisher is loaded: `publish` names none.", ""]

    out += [
        "## [accounts.NAME]",
        "",
        "Sender accounts, one table per account: the keys of every account, then each "
        "channel's own.",
        "",
    ]
    out += [*key_table(account_common_keys(plugins)), ""]
    for lines in _plugin_sections("channel", channels, "No keys of its own."):
        out += lines

    for title, intro, keys in (
        (
            "## [wallets.CODE]",
            'Defaults for the campaigns of a wallet ("carteira"); a wallet not listed has '
            "none. Templates are checked when the configuration is loaded.",
            WALLET_KEYS,
        ),
        (
            "## [tracking]",
            "The tracking endpoint (opens, clicks, unsubscribes, webhooks) and the secret "
            "that signs every link. `disparo run` checks that `listen` can be bound before it "
            "starts.",
            TRACKING_KEYS,
        ),
        (
            "## [mailboxes.NAME]",
            "Bounce mailboxes (IMAP) where DSNs and complaints arrive; they need [tracking].",
            MAILBOX_KEYS,
        ),
        (
            "## [templates.NAME]",
            "Approved WhatsApp templates, named by `_nt` in a file name (N16).",
            TEMPLATE_KEYS,
        ),
        (
            "## [tui]",
            "The terminal UI (`disparo tui`, and over SSH `disparo ssh-serve`).",
            TUI_KEYS,
        ),
        (
            "## [groups.NAME]",
            "Groups fed by an HTTP endpoint (G1–G3), synced by `disparo run` on their schedule "
            "and by `disparo groups sync NAME`. Groups fed by hand or by file need no table.",
            GROUP_KEYS,
        ),
        (
            "## [api]",
            "The send API (`disparo run`, `disparo api serve`).",
            API_KEYS,
        ),
        (
            "## [api.clients.NAME]",
            "A client system of the send API, with its bearer token.",
            API_CLIENT_KEYS,
        ),
    ):
        out += [title, "", intro, "", *key_table(keys), ""]
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m engine.config.reference",
        description="Write the configuration reference from the key tables (disparo's own "
        "plugins only).",
    )
    parser.add_argument("file", nargs="?", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--check", action="store_true", help="Exit 1 when FILE differs; write nothing."
    )
    args = parser.parse_args(argv)
    return write_or_check(args.file, render_reference(builtin_plugins()), REGENERATE, args.check)


def write_or_check(file: Path, text: str, regenerate: str, check: bool) -> int:
    """A generated file's command: write ``text`` to ``file``, or with ``check`` only say
    (exit status 1) when ``file`` differs from it and how to regenerate it."""
    if check:
        current = file.read_text(encoding="utf-8") if file.is_file() else ""
        if current != text:
            print(f"{file} is out of date: run `{regenerate}`", file=sys.stderr)
            return 1
        return 0
    file.write_text(text, encoding="utf-8")
    print(f"wrote {file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
