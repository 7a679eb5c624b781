"""disparo's engine: file-drop-driven, paced e-mail, SMS and WhatsApp campaigns.

Plugin authors import ``hookimpl`` from here::

    from engine import hookimpl

    @hookimpl
    def register_channels(register):
        register(MyChannel)
"""

from typing import Any

from engine.hookspecs import hookimpl

#: the plugin API this disparo offers (docs/plugins.md says what is stable within it); a
#: plugin may check it, or declare the version it needs with ``DISPARO_PLUGIN_API = 1`` in
#: its module: a plugin that needs a newer one is refused at load with the reason
PLUGIN_API = 1

_version: str | None = None


def __getattr__(name: str) -> Any:
    """``__version__``, looked up in the installed distribution's metadata on first use: a
    command that does not show it starts without that lookup (issue 16, goal 7)."""
    global _version
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _version is None:
        from importlib import metadata

        try:
            _version = metadata.version("disparo")
        except metadata.PackageNotFoundError:  # a source tree that is not installed
            _version = "0.0.0"
    return _version


__all__ = ["PLUGIN_API", "__version__", "hookimpl"]
