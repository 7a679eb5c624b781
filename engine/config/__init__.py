"""``disparo.toml``: find it, read and validate it, and write the commented starter file.

One TOML file holds the engine settings, the sources, the sender accounts and the wallets.
Every problem names the file, the key and what was expected. Secrets are references only
(``password_env = "VAR"`` or ``password_file = "path"``, F5): a secret written in clear is
refused, and a ``SecretRef`` never shows its value.

The package: ``keys`` (the rule of a key and the table reader), ``secrets`` (references),
``settings`` (the values and the key tables of every section), ``reader`` (find, load,
validate) and ``starter`` (``disparo init``'s file).
"""

from typing import TYPE_CHECKING, Any

from engine.config.keys import (
    MISSING,
    ConfigError,
    ConfigProblem,
    Configurable,
    Key,
    parse_duration,
)
from engine.config.reader import SECTIONS, find_config, load_config, parse_config
from engine.config.secrets import SECRET_WORDS, SecretError, SecretRef
from engine.config.settings import (
    ACCOUNT_KEYS,
    API_CLIENT_KEYS,
    API_KEYS,
    CONFIG_NAME,
    DEFAULT_TIME_ZONE,
    ENGINE_KEYS,
    ENV_VAR,
    GROUP_KEYS,
    LOG_FORMAT_ENV,
    LOG_FORMATS,
    MAILBOX_KEYS,
    ROLES,
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

if TYPE_CHECKING:
    from engine.config.starter import (
        STARTER_FOLDERS,
        StarterBlock,
        starter_blocks,
        write_starter,
    )

#: names of ``engine.config.starter`` (``disparo init``'s file), imported on first use: its
#: imports (secrets, tomli_w) are no other command's (issue 16, goal 7)
_STARTER = frozenset({"STARTER_FOLDERS", "StarterBlock", "starter_blocks", "write_starter"})


def __getattr__(name: str) -> Any:
    if name in _STARTER:
        from engine.config import starter

        return getattr(starter, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ACCOUNT_KEYS",
    "API_CLIENT_KEYS",
    "API_KEYS",
    "CONFIG_NAME",
    "DEFAULT_TIME_ZONE",
    "ENGINE_KEYS",
    "ENV_VAR",
    "GROUP_KEYS",
    "LOG_FORMATS",
    "LOG_FORMAT_ENV",
    "MAILBOX_KEYS",
    "MISSING",
    "ROLES",
    "SECRET_WORDS",
    "SECTIONS",
    "SOURCE_KEYS",
    "STARTER_FOLDERS",
    "TEMPLATE_KEYS",
    "TRACKING_KEYS",
    "TUI_KEYS",
    "WALLET_KEYS",
    "AccountSettings",
    "ApiClient",
    "ApiSettings",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "Configurable",
    "EngineSettings",
    "GroupSettings",
    "Key",
    "MailboxSettings",
    "PollSchedule",
    "SecretError",
    "SecretRef",
    "SourceSettings",
    "StarterBlock",
    "TemplateSettings",
    "TrackingSettings",
    "TuiSettings",
    "WalletSettings",
    "find_config",
    "load_config",
    "parse_config",
    "parse_duration",
    "starter_blocks",
    "write_starter",
]
