"""The plugin manager: loads built-in and third-party plugins through one door, once.

Every plugin, ours included, is a module published under the entry-point group ``disparo``.
``DISPARO_PLUGINS`` (comma-separated entry-point names) limits loading to those;
``DISPARO_BLOCK_PLUGINS`` skips the ones named. The engine reaches plugins only through
the typed ``Plugins`` façade below.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import threading
from collections.abc import Awaitable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

from engine import PLUGIN_API, hookspecs

if TYPE_CHECKING:
    import click

    from engine.events import CampaignEvent, DeliveryEvent
    from engine.mailing_names import ChannelWord

log = logging.getLogger(__name__)

PROJECT = "disparo"
ENTRY_POINT_GROUP = "disparo"
REGISTRIES = {
    "register_source_kinds": "source kind",
    "register_formats": "format",
    "register_channels": "channel",
    "register_publishers": "publisher",
    "register_webhooks": "webhooks",
}
_NAME = re.compile(r"[a-z0-9][a-z0-9.\-]*")

T = TypeVar("T")


class PluginError(Exception):
    """A plugin could not be loaded or registered something invalid."""


async def await_me_maybe(value: T | Awaitable[T]) -> T:
    """Await ``value`` if a hook implementation returned a coroutine, else return it."""
    if inspect.isawaitable(value):
        return await value
    return value


@dataclass(frozen=True)
class Registered:
    """One class a plugin registered: its registry, id and the plugin that provided it."""

    registry: str
    name: str
    cls: type[Any]
    plugin: str


@dataclass
class PluginInfo:
    """A loaded plugin, for ``disparo plugins``."""

    name: str
    distribution: str | None
    version: str | None
    module: str
    hooks: list[str] = field(default_factory=list)
    registered: list[Registered] = field(default_factory=list)


def _base(hook_name: str) -> type[Any]:
    """The class every registration of a registry hook must subclass."""
    if hook_name == "register_channels":
        from engine.plugins.channel import Channel

        return Channel
    if hook_name == "register_source_kinds":
        from engine.plugins.source import Source

        return Source
    if hook_name == "register_formats":
        from engine.plugins.format import Format

        return Format
    if hook_name == "register_publishers":
        from engine.plugins.publisher import Publisher

        return Publisher
    from engine.plugins.webhook import Webhooks

    return Webhooks


def _split_env(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


#: the distribution whose entry points are disparo's own plugins
DISTRIBUTION = "disparo"


def builtin_plugin_names() -> list[str]:
    """The entry-point names of disparo's own plugins (``email``, ``local``, ``mailing``…),
    sorted: what ``DISPARO_PLUGINS`` lists to keep third-party plugins out (of a test run, of
    the configuration reference)."""
    return sorted(
        ep.name
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)
        if ep.dist is not None and ep.dist.name == DISTRIBUTION
    )


def builtin_plugins() -> Plugins:
    """disparo's own plugins only, whatever else is installed or the environment says."""
    pm = make_manager()
    return Plugins(pm, load_entry_points(pm, only=builtin_plugin_names()))


def make_manager() -> pluggy.PluginManager:
    """An empty manager with disparo's hookspecs (tests use it for hermetic plugin sets)."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def load_entry_points(
    pm: pluggy.PluginManager, only: Collection[str] | None = None
) -> Mapping[str, tuple[str | None, str | None]]:
    """Register every entry point of group ``disparo`` allowed by the environment; with
    ``only``, exactly the entry points named there, whatever the environment says (the test
    kit's hermetic plugin sets).

    Returns plugin name -> (distribution, version).
    """
    if only is None:
        allow = _split_env("DISPARO_PLUGINS")
        block = _split_env("DISPARO_BLOCK_PLUGINS") or set()
    else:
        allow, block = set(only), set()
    origins = Origins()
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in block or (allow is not None and ep.name not in allow):
            pm.set_blocked(ep.name)
            continue
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            dist = ep.dist.name if ep.dist else "?"
            raise PluginError(
                f"plugin `{ep.name}` (from {dist}, {ep.value}) failed to import: {exc}; "
                f"fix or uninstall it, or skip it with DISPARO_BLOCK_PLUGINS={ep.name}"
            ) from exc
        needed = getattr(plugin, "DISPARO_PLUGIN_API", None)
        if isinstance(needed, int) and needed > PLUGIN_API:
            dist = ep.dist.name if ep.dist else "?"
            raise PluginError(
                f"plugin `{ep.name}` (from {dist}) needs plugin API {needed}; this disparo "
                f"offers {PLUGIN_API}: upgrade disparo, or skip it with "
                f"DISPARO_BLOCK_PLUGINS={ep.name}"
            )
        pm.register(plugin, name=ep.name)
        origins.dists[ep.name] = ep.dist
    return origins


class Origins(Mapping[str, tuple[str | None, str | None]]):
    """Plugin name -> (distribution, version), read when asked (``disparo plugins``): each
    distribution's METADATA file is parsed (with the ``email`` package) once, and only then,
    not at every start (issue 16, goal 7)."""

    def __init__(self) -> None:
        #: plugin name -> the distribution its entry point came from
        self.dists: dict[str, metadata.Distribution | None] = {}
        self._known: dict[metadata.Distribution, tuple[str | None, str | None]] = {}

    def __getitem__(self, name: str) -> tuple[str | None, str | None]:
        dist = self.dists[name]
        if dist is None:
            return None, None
        found = self._known.get(dist)
        if found is None:
            data = dist.metadata
            found = self._known[dist] = (data["Name"], data["Version"])
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(self.dists)

    def __len__(self) -> int:
        return len(self.dists)


class Plugins:
    """The engine's typed view of the loaded plugins."""

    def __init__(
        self,
        pm: pluggy.PluginManager,
        origins: Mapping[str, tuple[str | None, str | None]] | None = None,
    ) -> None:
        self.pm = pm
        self._origins: Mapping[str, tuple[str | None, str | None]] = origins or {}
        self._rebuild()

    def _rebuild(self) -> None:
        self.pm.check_pending()  # a misspelled hook fails here, at start
        self._registered: list[Registered] = []
        self._by_registry: dict[str, dict[str, Registered]] = {r: {} for r in REGISTRIES}
        for hook_name in REGISTRIES:
            self._collect(hook_name)

    def register(self, plugin: object, name: str) -> None:
        """Add a plugin at run time (tests, embedding); its registrations apply at once."""
        self.pm.register(plugin, name=name)
        try:
            self._rebuild()
        except Exception:
            self.pm.unregister(name=name)
            self._rebuild()
            raise

    def unregister(self, name: str) -> None:
        """Remove a plugin added with ``register``."""
        self.pm.unregister(name=name)
        self._rebuild()

    def _collect(self, hook_name: str) -> None:
        what = REGISTRIES[hook_name]
        caller = getattr(self.pm.hook, hook_name)
        # Call each implementation on its own so every registration is attributed to the
        # plugin that made it (``disparo plugins`` shows who provides what).
        for impl in reversed(caller.get_hookimpls()):
            plugin_name = impl.plugin_name

            def register(cls: type[Any], _plugin: str = plugin_name) -> None:
                self._add(hook_name, what, cls, _plugin)

            impl.function(**dict.fromkeys(impl.argnames, register))

    def _add(self, hook_name: str, what: str, cls: object, plugin: str) -> None:
        base = _base(hook_name)
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise PluginError(
                f"plugin `{plugin}` registered {cls!r} as a {what}, but a {what} must be a "
                f"subclass of {base.__module__}.{base.__qualname__}; see docs/plugins.md"
            )
        abstract = sorted(getattr(cls, "__abstractmethods__", ()))
        if abstract:
            raise PluginError(
                f"plugin `{plugin}` registered the {what} {cls.__qualname__}, which does not "
                f"implement {', '.join(abstract)}; see docs/plugins.md"
            )
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise PluginError(
                f"plugin `{plugin}` registered a {what} {cls!r} whose `name` is {name!r}; "
                "give the class a lower-case `name` attribute such as `my-channel`"
            )
        table = self._by_registry[hook_name]
        if name in table:
            other = table[name].plugin
            raise PluginError(
                f"{what} `{name}` is registered by both `{other}` and `{plugin}`; "
                f"skip one with DISPARO_BLOCK_PLUGINS={plugin}"
            )
        if hook_name == "register_channels":
            self._check_channel(cls, name, plugin)
        if hook_name == "register_source_kinds" and getattr(cls, "writable", False):
            from engine.plugins.source import Source

            missing = [
                m for m in ("move", "upload", "exists") if getattr(cls, m) is getattr(Source, m)
            ]
            if missing:
                raise PluginError(
                    f"plugin `{plugin}`: source kind `{name}` is writable but does not implement "
                    f"{', '.join(missing)}; implement them, or set `writable = False`"
                )
        item = Registered(what, name, cls, plugin)
        table[name] = item
        self._registered.append(item)

    def _check_channel(self, cls: type[Any], name: str, plugin: str) -> None:
        """A channel's address kind and file word (N7): the word must not be one of the
        grammar's own, nor another channel's."""
        from engine.mailing_names import check_channel_word

        if getattr(cls, "address_kind", None) not in ("email", "phone"):
            raise PluginError(
                f"plugin `{plugin}`: channel `{name}` must set `address_kind` to "
                '"email" or "phone" (the contact address it sends to)'
            )
        word = cls.file_word
        if word is None:
            return
        problem = check_channel_word(word, name)
        if problem is None:
            other = next(
                (
                    r
                    for r in self._by_registry["register_channels"].values()
                    if r.cls.file_word == word
                ),
                None,
            )
            if other is not None:
                problem = f"channel `{other.name}` (plugin `{other.plugin}`) already uses it"
        if problem is not None:
            raise PluginError(
                f"plugin `{plugin}`: channel `{name}` cannot take the file-name word "
                f"`_{word}`: {problem}; choose another `file_word`"
            )

    def channel_words(self) -> dict[str, ChannelWord]:
        """File-name word -> the channel it selects (N7), for every loaded channel."""
        from engine.mailing_names import ChannelWord

        return {
            r.cls.file_word: ChannelWord(r.cls.file_word, r.name, r.cls.address_kind)
            for r in self._by_registry["register_channels"].values()
            if r.cls.file_word
        }

    # -- registries ------------------------------------------------------------------------

    def _classes(self, hook_name: str) -> dict[str, type[Any]]:
        return {name: r.cls for name, r in sorted(self._by_registry[hook_name].items())}

    def source_kinds(self) -> dict[str, type[Any]]:
        """Source kind name -> class."""
        return self._classes("register_source_kinds")

    def formats(self) -> dict[str, type[Any]]:
        """Format name -> class."""
        return self._classes("register_formats")

    def channels(self) -> dict[str, type[Any]]:
        """Channel implementation name -> class."""
        return self._classes("register_channels")

    def publishers(self) -> dict[str, type[Any]]:
        """Publisher name -> class."""
        return self._classes("register_publishers")

    def webhooks(self) -> dict[str, type[Any]]:
        """Webhooks name -> class (mounted on the tracking endpoint)."""
        return self._classes("register_webhooks")

    def describe(self) -> list[PluginInfo]:
        """Every loaded plugin with the hooks it implements and what it registered."""
        infos: dict[str, PluginInfo] = {}
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:
                continue
            dist, version = self._origins.get(name, (None, None))
            module = getattr(plugin, "__name__", type(plugin).__name__)
            infos[name] = PluginInfo(name, dist, version, module)
        for hook_name in sorted(n for n in dir(self.pm.hook) if not n.startswith("_")):
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.plugin_name in infos:
                    infos[impl.plugin_name].hooks.append(hook_name)
        for item in self._registered:
            if item.plugin in infos:
                infos[item.plugin].registered.append(item)
        return sorted(infos.values(), key=lambda i: i.name)

    # -- commands and observers ------------------------------------------------------------

    def add_commands(self, cli: click.Group) -> None:
        """Let plugins add their commands to the CLI."""
        self.pm.hook.register_commands(cli=cli)

    async def _notify(self, hook_name: str, event: Any) -> None:
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            try:
                await await_me_maybe(impl.function(event=event))
            except Exception:
                log.exception("plugin %s failed in %s; continuing", impl.plugin_name, hook_name)

    @property
    def observes_deliveries(self) -> bool:
        """Whether any plugin implements ``delivery_event`` (events are built only then)."""
        return bool(self.pm.hook.delivery_event.get_hookimpls())

    @property
    def observes_campaigns(self) -> bool:
        """Whether any plugin implements ``campaign_event``."""
        return bool(self.pm.hook.campaign_event.get_hookimpls())

    async def delivery_event(self, event: DeliveryEvent) -> None:
        """Tell every observer about a delivery event (errors are logged, not raised)."""
        await self._notify("delivery_event", event)

    async def campaign_event(self, event: CampaignEvent) -> None:
        """Tell every observer about a campaign event (errors are logged, not raised)."""
        await self._notify("campaign_event", event)


_lock = threading.Lock()
_loaded: Plugins | None = None


def load_plugins() -> Plugins:
    """Load the plugins once per process (lazily) and return the façade."""
    global _loaded
    with _lock:
        if _loaded is None:
            pm = make_manager()
            _loaded = Plugins(pm, load_entry_points(pm))
        return _loaded


def reset_plugins() -> None:
    """Forget the loaded plugins (tests use it after changing the environment)."""
    global _loaded
    with _lock:
        _loaded = None
