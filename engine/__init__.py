"""disparo's engine: file-drop-driven, paced e-mail, SMS and WhatsApp campaigns.

Plugin authors import ``hookimpl`` from here::

    from engine import hookimpl

    @hookimpl
    def register_channels(register):
        register(MyChannel)
"""

from importlib import metadata

from engine.hookspecs import hookimpl

try:
    __version__ = metadata.version("disparo")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

#: the plugin API this disparo offers (docs/plugins.md says what is stable within it); a
#: plugin may check it, or declare the version it needs with ``DISPARO_PLUGIN_API = 1`` in
#: its module: a plugin that needs a newer one is refused at load with the reason
PLUGIN_API = 1

__all__ = ["PLUGIN_API", "__version__", "hookimpl"]
