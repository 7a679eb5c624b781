"""Hermetic plugin sets for tests: disparo's own plugins and the ones a test names, never the
third-party plugins that happen to be installed on the machine."""

from __future__ import annotations

from typing import Any

from engine import hookimpl
from engine.hookspecs import Register
from engine.plugins import (
    DISTRIBUTION,
    ENTRY_POINT_GROUP,
    Plugins,
    builtin_plugin_names,
    load_entry_points,
    make_manager,
)
from engine.plugins.channel import Channel
from engine.plugins.format import Format
from engine.plugins.publisher import Publisher
from engine.plugins.source import Source
from engine.plugins.webhook import Webhooks

__all__ = ["DISTRIBUTION", "Registers", "builtin_plugin_names", "hermetic_plugins"]


def hermetic_plugins(
    *plugins: object, entry_points: tuple[str, ...] = (), builtins: bool = True
) -> Plugins:
    """A plugin set made for one test: disparo's built-in plugins (unless ``builtins`` is
    False), the installed entry points named in ``entry_points`` (your package's, to test it
    as installed), and ``plugins`` (modules or objects with ``@hookimpl`` functions, each
    registered under its ``__name__`` or its class name). The environment
    (``DISPARO_PLUGINS``…) is not read and the process-wide set (``load_plugins()``) is not
    touched; a registration the manager refuses raises ``PluginError`` here."""
    pm = make_manager()
    names = [*(builtin_plugin_names() if builtins else ()), *entry_points]
    origins = load_entry_points(pm, only=names)
    missing = sorted(set(entry_points) - set(origins))
    if missing:
        raise LookupError(
            f"no entry point named {', '.join(missing)} in group `{ENTRY_POINT_GROUP}`: "
            "is the package installed (pip install -e .)?"
        )
    for plugin in plugins:
        pm.register(plugin, name=getattr(plugin, "__name__", type(plugin).__name__))
    return Plugins(pm, origins)


_BASES = (Channel, Source, Format, Publisher, Webhooks)


class Registers:
    """A throwaway plugin that registers ``classes``, each through the hook of its base
    (a ``Channel`` with ``register_channels``, a ``Source`` with ``register_source_kinds``…).

    ``plugins.register(Registers(MyChannel), "mine")`` adds them to a ``Plugins``;
    ``plugins.unregister("mine")`` takes them out again."""

    def __init__(self, *classes: type[Any]) -> None:
        for cls in classes:
            if not (isinstance(cls, type) and issubclass(cls, _BASES)):
                names = ", ".join(f"{b.__module__}.{b.__qualname__}" for b in _BASES)
                raise TypeError(f"{cls!r} subclasses none of the plugin bases ({names})")
        self.classes = classes
        self.__name__ = "+".join(c.__name__ for c in classes) or "nothing"

    def _register(self, register: Register, base: type[Any]) -> None:
        for cls in self.classes:
            if issubclass(cls, base):
                register(cls)

    @hookimpl
    def register_channels(self, register: Register) -> None:
        self._register(register, Channel)

    @hookimpl
    def register_source_kinds(self, register: Register) -> None:
        self._register(register, Source)

    @hookimpl
    def register_formats(self, register: Register) -> None:
        self._register(register, Format)

    @hookimpl
    def register_publishers(self, register: Register) -> None:
        self._register(register, Publisher)

    @hookimpl
    def register_webhooks(self, register: Register) -> None:
        self._register(register, Webhooks)
