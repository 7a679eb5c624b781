"""Every hook a disparo plugin can implement (pluggy project ``disparo``, plugin API v1:
``engine.PLUGIN_API``; the author guide is docs/plugins.md).

Plugins are modules or objects exposing functions decorated with ``engine.hookimpl`` and
published under the entry-point group ``disparo``. The built-in sources, formats,
publishers, channels and webhooks register through exactly these hooks.

Registry hooks receive a ``register`` callback and call it once per class they provide; the
class's ``name`` attribute is its id (a source kind, a channel, a format, a publisher, a set
of webhooks). Each class must subclass its base (``engine.plugins.source.Source``,
``…channel.Channel``, ``…format.Format``, ``…publisher.Publisher``,
``…webhook.Webhooks``) and implement its abstract methods: what does not is refused when
the plugins load, with the reason. Observer hooks receive frozen event values; they may be
``async def`` and are awaited. An observer that raises is logged and skipped: it never
stops sending.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from engine.events import CampaignEvent, DeliveryEvent

hookspec = pluggy.HookspecMarker("disparo")
hookimpl = pluggy.HookimplMarker("disparo")

Register = Callable[[type[Any]], None]


@hookspec
def register_source_kinds(register: Register) -> None:
    """Provide kinds of file source (``local``, ``ftp``, ``ftps``, ``sftp``…).

    Called once when plugins load. Call ``register(cls)`` for each kind, a subclass of
    ``engine.plugins.source.Source``; ``cls.name`` is the value of ``kind`` in a
    ``[sources.NAME]`` table of ``disparo.toml``. Returns nothing.
    """


@hookspec
def register_channels(register: Register) -> None:
    """Provide channels that send messages (``email``, ``sms-long``, ``whatsapp-shared``…).

    Called once when plugins load. Call ``register(cls)`` for each channel, a subclass of
    ``engine.plugins.channel.Channel``; ``cls.name`` is what an ``[accounts.NAME]`` table
    says in ``channel = "…"``, and ``cls.file_word`` (when set) the word that selects it in
    a mailing file name. A word taken by the grammar or another channel is refused at load.
    Returns nothing.
    """


@hookspec
def register_formats(register: Register) -> None:
    """Provide input file formats (the built-in ``mailing``…).

    Called once when plugins load. Call ``register(cls)`` for each format, a subclass of
    ``engine.plugins.format.Format``; ``cls.name`` is the value of ``format`` in a
    ``[sources.NAME]`` table. Returns nothing.
    """


@hookspec
def register_publishers(register: Register) -> None:
    """Provide result publishers (result files, exports written back to a source).

    Called once when plugins load. Call ``register(cls)`` for each publisher, a subclass of
    ``engine.plugins.publisher.Publisher``; ``cls.name`` is what a source's ``publish``
    setting names. Returns nothing.
    """


@hookspec
def register_webhooks(register: Register) -> None:
    """Provide routes on the tracking endpoint for what a provider sends back (status
    callbacks, inbound replies and STOP, bounce and complaint notifications).

    Called once when plugins load. Call ``register(cls)`` for each set of routes, a subclass
    of ``engine.plugins.webhook.Webhooks``; ``cls.name`` is its id. The endpoint makes one
    instance per process and mounts its ``routes()``. Returns nothing.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add commands to the ``disparo`` command line.

    Called once when the CLI starts, with the root ``click`` group; add commands or groups
    to it with ``cli.add_command``. Returns nothing.
    """


@hookspec
def delivery_event(event: DeliveryEvent) -> None:
    """Observe something that happened to one delivery (sent, delivered, opened, clicked,
    bounced, complained, unsubscribed, replied, failed, expired…).

    Called after the event is stored, once per event, from the engine's event loop; may be
    ``async def``. The return value is ignored. Keep it quick or hand work to a task.
    """


@hookspec
def campaign_event(event: CampaignEvent) -> None:
    """Observe a campaign's change of state (created, sending, paused, held, resumed,
    completed, cancelled, expired) or a batch release.

    Called after the change is stored; may be ``async def``. The return value is ignored.
    """
