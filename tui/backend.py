"""The TUI's façade over the store: what it reads, the commands it writes, who acts and with
what role, and the time zone times are shown in.

The App receives one ``Backend`` in its constructor; screens call its blocking methods from
worker threads only. Operator actions are commands (``engine.actions``): the TUI writes one,
gives a running engine ``apply_after`` seconds to apply it (so its observers hear of it), and
applies it itself when no engine did, exactly as the CLI does. Either way the command is
applied once and the audit log says who did it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from engine.actions import NEEDS, ROLES, actor, allowed, apply
from engine.clock import Clock
from engine.config import Config
from engine.plugins import Plugins
from engine.store import Store
from engine.store.commands import Command

#: how often the TUI looks whether the engine applied its command
POLL_SECONDS = 0.05
#: actions of the UI itself (not engine commands) and the least role for each: an export
#: writes people's data to a file on the machine the UI runs on (over SSH: the server)
#: and composing a campaign (the New campaign form) is an operator's
UI_NEEDS = {"export": "operator", "compose": "operator"}


def default_actor() -> str:
    """Who is acting: ``$DISPARO_ACTOR`` (set by ``disparo ssh-serve`` per key), else the OS
    user: the CLI's rule, from the CLI."""
    return actor()


class Refused(Exception):
    """An action the role may not do (the message says which role it needs)."""


@dataclass(frozen=True)
class Outcome:
    """What became of an action: applied or rejected, the engine's or the store's message, and
    whether a running engine applied it."""

    ok: bool
    message: str
    by_engine: bool
    command_id: int


class Backend:
    """The store, configuration and clock of one TUI session, with its role and actor."""

    def __init__(
        self,
        store: Store,
        config: Config,
        clock: Clock,
        *,
        role: str,
        actor: str,
        plugins: Plugins | None = None,
        apply_after: float = 2.0,
        engine: bool = False,
    ) -> None:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
        self.store = store
        self.config = config
        self.clock = clock
        self.role = role
        self.actor = actor
        self.plugins = plugins
        self.apply_after = apply_after
        #: an engine runs in this process (``disparo tui --engine``)
        self.engine = engine

    @property
    def tz(self) -> ZoneInfo:
        return self.config.tz

    def now(self) -> datetime:
        """Now, from the injected clock (UTC)."""
        return self.clock.now()

    def local(self, value: datetime) -> datetime:
        """``value`` in the configured time zone."""
        return value.astimezone(self.tz)

    def may(self, action: str) -> bool:
        """May this session's role do ``action`` (``engine.actions.NEEDS``, and ``export``:
        the UI's own action, which writes recipients' data to a file)?"""
        if action in UI_NEEDS:
            return ROLES.index(self.role) >= ROLES.index(UI_NEEDS[action])
        return allowed(self.role, action)

    def refusal(self, action: str) -> str:
        """Why this role may not do ``action``."""
        need = UI_NEEDS.get(action) or NEEDS.get(action, "admin")
        return f"the {self.role} role may not {action}; it needs {need}"

    def act(self, action: str, target: str, args: dict[str, Any] | None = None) -> Outcome:
        """Write the command, let a running engine apply it, else apply it here (blocking)."""
        if not self.may(action):
            raise Refused(self.refusal(action))
        store = self.store
        command_id = store.commands.submit(
            actor=self.actor, role=self.role, action=action, target=target, args=args or {}
        )
        waited_until = time.monotonic() + self.apply_after
        command = store.commands.get(command_id)
        while command is not None and command.status == "pending":
            if time.monotonic() >= waited_until:
                break
            time.sleep(POLL_SECONDS)
            command = store.commands.get(command_id)
        assert command is not None
        if command.status != "pending":
            return _outcome(command, by_engine=True)
        try:
            applied = apply(store, command)
        except Exception:
            # an engine applied it meanwhile (the command is applied once, whoever gets to it)
            again = store.commands.get(command_id)
            if again is None or again.status == "pending":
                raise
            return _outcome(again, by_engine=True)
        return Outcome(applied.ok, applied.message, False, command_id)


def _outcome(command: Command, *, by_engine: bool) -> Outcome:
    return Outcome(command.status == "applied", command.result or "", by_engine, command.id)
