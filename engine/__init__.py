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

__all__ = ["__version__", "hookimpl"]
