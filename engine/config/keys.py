"""Reading one table of ``disparo.toml``: the rule of each key (``Key``), the checks and
conversions, and the problems found (every one names the file, the key and what was expected)."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.config.secrets import SECRET_WORDS, SecretRef


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


#: what a ``path`` key names, checked when the configuration is loaded (``Key.target``)
PATH_TARGETS: dict[str, str] = {
    "exists": "an existing file or folder disparo can read",
    "file": "an existing file disparo can read",
    "private": "an existing file disparo can read and nobody else (mode 600)",
    "folder": "an existing folder disparo can read",
    "created": "made by disparo when it needs it (need not exist)",
}

#: permission bits that let the group or other users reach a private file
_OPEN_TO_OTHERS = 0o077


@dataclass(frozen=True)
class Key:
    """The rule for one key of a table.

    ``kind`` is one of: ``str``, ``int``, ``float``, ``bool``, ``path`` (relative to the
    config file), ``duration`` (``"90s"``, ``"2m"``, ``"1h30m"``, ``"3d"`` or seconds;
    ``"0s"`` too when ``minimum=0``), ``secret``
    (written as ``<key>_env`` or ``<key>_file``), ``choice``, ``zone``, ``cron``,
    ``strings`` (a list of strings), ``table`` (a table of strings) and ``section`` (a
    sub-table ``[….NAME]`` checked against its own ``keys``, given back as a mapping).

    ``target`` says what a ``path`` names, checked when the configuration is loaded (so a
    wrong path is one line at start, not a failure hours later): ``"exists"`` (the default:
    an existing file or folder disparo can read), ``"file"`` (an existing readable file: a
    template, a CA bundle, known_hosts), ``"private"`` (an existing readable file holding a
    secret, that only its owner may read, as ``ssh`` wants of a private key: a key file, a
    DKIM key), ``"folder"`` (an existing folder) or ``"created"`` (something disparo makes
    when it needs it, such as a spool or an outbox: not required to exist). A ``secret``
    given as ``<key>_file`` is always checked as ``"private"``.
    """

    kind: str
    default: Any = MISSING
    help: str = ""
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    check: Callable[[Any], str | None] | None = None
    target: str = "exists"
    #: a ``section``'s own keys
    keys: Mapping[str, Key] | None = None

    def __post_init__(self) -> None:
        if self.target not in PATH_TARGETS:  # a programming error in a Key table
            raise ValueError(f"Key target must be one of {', '.join(PATH_TARGETS)}")
        if (self.kind == "section") != (self.keys is not None):
            raise ValueError("a section Key, and only one, has keys")

    @property
    def required(self) -> bool:
        return self.default is MISSING


def check_path(path: Path, target: str, *, root: Path | None = None) -> str | None:
    """What is wrong with ``path`` as ``target`` (see ``Key``), with the fix; None when fine.

    Done when the configuration is loaded, by the user disparo runs as: a file that user
    cannot read is as wrong as a file that is not there.
    """
    if target == "created":
        return None
    where = f" (relative paths start in {root})" if root is not None else ""
    try:
        info = path.stat()
    except FileNotFoundError:
        if target == "folder":
            return f"{path} does not exist; create it (`mkdir -p {path}`) or fix the path{where}"
        made = "create it" if target == "exists" else "create the file"
        return f"{path} does not exist; fix the path{where} or {made}"
    except OSError as exc:
        return (
            f"{path} cannot be reached ({exc.strerror or exc}); check the folders above it "
            "and their permissions"
        )
    is_dir = stat.S_ISDIR(info.st_mode)
    if target == "folder" and not is_dir:
        return f"{path} is not a folder; name a folder here"
    if target in ("file", "private") and is_dir:
        return f"{path} is a folder; name a file here"
    if is_dir:
        if not os.access(path, os.R_OK | os.X_OK):
            return (
                f"{path} cannot be read by this user (permission denied); give the user "
                "disparo runs as read access to it"
            )
        return None
    try:
        with path.open("rb") as handle:
            first = handle.read(1)
    except OSError as exc:
        return (
            f"{path} cannot be read by this user ({exc.strerror or exc}); give the user "
            "disparo runs as read access to it"
        )
    if target == "private":
        if info.st_mode & _OPEN_TO_OTHERS:
            return (
                f"{path} is open to other users (mode {stat.S_IMODE(info.st_mode):04o}); "
                f"a secret must be readable by its owner only: run `chmod 600 {path}`"
            )
        if not first:
            return f"{path} is empty; write the secret in it"
    return None


_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def parse_duration(value: object, *, zero: bool = False) -> timedelta | None:
    """``"2m"``, ``"1h30m"``, ``"45s"``, ``"3d"`` or a number of seconds -> timedelta (None if
    invalid); a zero duration (``"0s"``) only with ``zero``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return timedelta(seconds=value) if value > 0 or (zero and value == 0) else None
    if not isinstance(value, str) or not value.strip():
        return None
    match = _DURATION.fullmatch(value.strip().lower())
    if not match or not any(match.groups()):
        return None
    d, h, m, s = (int(g) if g else 0 for g in match.groups())
    total = timedelta(days=d, hours=h, minutes=m, seconds=s)
    return total if total > timedelta(0) or zero else None


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
        #: keys given in the table (a bad value is reported once, not also as missing)
        given: set[str] = set()
        for name, value in raw.items():
            dotted = f"{where}.{name}"
            base, _, suffix = name.rpartition("_")
            if suffix in ("env", "file") and base in secrets:
                if base in given:
                    self.problem(dotted, f"give `{base}_env` or `{base}_file`, not both")
                    continue
                given.add(base)
                if not isinstance(value, str) or not value.strip():
                    what = "variable name" if suffix == "env" else "file path"
                    self.problem(dotted, f"expected a {what} (a non-empty string)")
                    continue
                if suffix == "env":
                    out[base] = SecretRef(base, env=value.strip())
                    continue
                path = self._path(value)
                problem = check_path(path, "private", root=self._root_of(value))
                if problem:
                    self.problem(dotted, problem)
                # kept even when wrong, so checks across keys do not report it again
                out[base] = SecretRef(base, file=path)
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
                import difflib  # on a problem only: not at every load

                close = difflib.get_close_matches(name, list(keys) + [f"{s}_env" for s in secrets])
                hint = f"; did you mean `{close[0]}`?" if close else ""
                known = ", ".join(sorted(keys))
                self.problem(dotted, f"unknown key{hint} (known keys: {known})")
                continue
            given.add(name)
            converted = self.value(dotted, value, key)
            if converted is not MISSING:
                out[name] = converted
        for name, key in keys.items():
            if name in out:
                continue
            if key.required:
                if name in given:
                    continue  # its value was wrong: reported above
                how = f"`{name}_env` or `{name}_file`" if key.kind == "secret" else f"`{name}`"
                self.problem(f"{where}.{name}", f"missing: {how} is required. {key.help}".strip())
            else:
                out[name] = key.default
        return out

    def _path(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.root / path

    def _root_of(self, value: str) -> Path | None:
        """The folder a relative path starts in (for messages), None for an absolute one."""
        return None if Path(value).expanduser().is_absolute() else self.root

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
            # a duration key with `minimum=0` takes "0s" (at once); the others must be positive
            parsed = parse_duration(value, zero=key.minimum == 0)
            if parsed is None:
                return self._bad(dotted, 'a duration such as "90s", "2m", "1h30m" or "3d"', value)
            return parsed
        if kind == "strings":
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return self._checked(dotted, tuple(value), key)
            return self._bad(dotted, "a list of strings", value)
        if kind == "table":
            if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
                return self._checked(dotted, MappingProxyType(dict(value)), key)
            return self._bad(dotted, "a table of strings", value)
        if kind == "section":
            if not isinstance(value, dict):
                return self._bad(dotted, f"a table ([{dotted}])", value)
            assert key.keys is not None
            before = len(self.problems)
            section = MappingProxyType(self.table(dotted, value, key.keys))
            if len(self.problems) > before:
                return MISSING  # reported key by key
            return self._checked(dotted, section, key)
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
            problem = check_path(result, key.target, root=self._root_of(value))
            if problem:
                # reported; the value is kept, so checks across keys do not report it again
                self.problem(dotted, problem)
                return result
        elif kind == "choice":
            if value not in key.choices:
                import difflib  # on a problem only: not at every load

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
        return self._checked(dotted, result, key)

    def _checked(self, dotted: str, value: Any, key: Key) -> Any:
        """``value`` when the key's own ``check`` finds nothing wrong with it (else reported)."""
        if key.check is not None:
            message = key.check(value)
            if message:
                self.problem(dotted, message)
                return MISSING
        return value

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


class Configurable:
    """Mixin for plugin classes with their own keys in a config table.

    A source kind or channel class sets ``config_keys``; they are validated together with
    the common keys of its table and handed back in ``options``.
    """

    config_keys: ClassVar[Mapping[str, Key]] = {}
