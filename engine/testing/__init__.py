"""disparo's test kit, for plugin authors and for disparo's own tests (part of the plugin
API, v1; docs/plugins.md, "Testing a plugin").

- ``hermetic_plugins``, ``Registers``, ``builtin_plugin_names``: plugin sets made for a test
  (disparo's built-ins and the plugins the test names, never whatever else is installed);
- ``make_clock``, ``open_store``, ``write_config``, ``make_config``, ``write_secret``: a
  ``TestClock``, a SQLite store on it, ``disparo.toml`` written from dicts and read as disparo
  reads it, a secret file written private (mode 600, as disparo requires);
- ``World``: an engine on the test clock that imports files and runs the dispatcher;
- ``Scripted``: a channel that records sends and answers from a script;
  ``check_channel``: the channel contract check;
- ``check_source``, ``FolderFiles``: the source contract check;
- ``start_smtp_sink``: an SMTP server on 127.0.0.1 keeping what it is sent;
- ``eventually``, ``eventually_sync``, ``GiveUp``: wait for a condition, never for a while;
- ``engine.testing.pytest_plugin``: fixtures, enabled with
  ``pytest_plugins = ["engine.testing.pytest_plugin"]``.
"""

from engine.testing.channels import (
    SAMPLE_ADDRESSES,
    ChannelCheck,
    ChannelContractError,
    Record,
    Scripted,
    check_channel,
    sample_campaign,
)
from engine.testing.eventually import TIMEOUT, GiveUp, eventually, eventually_sync
from engine.testing.plugins import Registers, builtin_plugin_names, hermetic_plugins
from engine.testing.smtp import SinkMessage, SmtpSink, start_smtp_sink
from engine.testing.sources import (
    UNSAFE_NAMES,
    FolderFiles,
    RemoteFiles,
    SourceContractError,
    check_source,
)
from engine.testing.store import (
    START,
    make_clock,
    make_config,
    open_store,
    write_config,
    write_secret,
)
from engine.testing.world import NotImported, World

__all__ = [
    "SAMPLE_ADDRESSES",
    "START",
    "TIMEOUT",
    "UNSAFE_NAMES",
    "ChannelCheck",
    "ChannelContractError",
    "FolderFiles",
    "GiveUp",
    "NotImported",
    "Record",
    "Registers",
    "RemoteFiles",
    "Scripted",
    "SinkMessage",
    "SmtpSink",
    "SourceContractError",
    "World",
    "builtin_plugin_names",
    "check_channel",
    "check_source",
    "eventually",
    "eventually_sync",
    "hermetic_plugins",
    "make_clock",
    "make_config",
    "open_store",
    "sample_campaign",
    "start_smtp_sink",
    "write_config",
    "write_secret",
]
