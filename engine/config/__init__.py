"""``disparo.toml``: find it, read and validate it, and write the commented starter file.

One TOML file holds the engine settings, the sources, the sender accounts and the wallets.
Every problem names the file, the key and what was expected. Secrets are references only
(``password_env = "VAR"`` or ``password_file = "path"``, F5): a secret written in clear is
refused, and a ``SecretRef`` never shows its value.

The package: ``keys`` (the rule of a key and the table reader), ``secrets`` (references),
``settings`` (the values and the key tables of every section), ``reader`` (find, load,
validate) and ``starter`` (``disparo init``'s file).
"""

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
    CONFIG_NAME,
    DEFAULT_TIME_ZONE,
    ENGINE_KEYS,
    ENV_VAR,
    LOG_FORMAT_ENV,
    LOG_FORMATS,
    MAILBOX_KEYS,
    ROLES,
    SOURCE_KEYS,
    TEMPLATE_KEYS,
    TRACKING_KEYS,
    WALLET_KEYS,
    AccountSettings,
    Config,
    EngineSettings,
    MailboxSettings,
    PollSchedule,
    SourceSettings,
    TemplateSettings,
    TrackingSettings,
    WalletSettings,
)
from engine.config.starter import STARTER_FOLDERS, StarterBlock, starter_blocks, write_starter

__all__ = [
    "ACCOUNT_KEYS",
    "CONFIG_NAME",
    "DEFAULT_TIME_ZONE",
    "ENGINE_KEYS",
    "ENV_VAR",
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
    "WALLET_KEYS",
    "AccountSettings",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "Configurable",
    "EngineSettings",
    "Key",
    "MailboxSettings",
    "PollSchedule",
    "SecretError",
    "SecretRef",
    "SourceSettings",
    "StarterBlock",
    "TemplateSettings",
    "TrackingSettings",
    "WalletSettings",
    "find_config",
    "load_config",
    "parse_config",
    "parse_duration",
    "starter_blocks",
    "write_starter",
]
