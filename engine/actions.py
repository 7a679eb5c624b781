"""Operator actions: pause, resume, cancel, priority, guard override, suppressions.

The UI and the CLI write them as commands in the store; the engine applies pending commands
every tick (so a pause reaches a running engine within a second), and the CLI applies its own
at once, so it also works with no engine running. Applying marks the command and makes the
change in one transaction: a command is applied once, whoever gets to it. Every action is in
the audit log with who did it.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.addresses import normalise_email, normalise_phone, suppression_key
from engine.plugins import Plugins

if TYPE_CHECKING:
    # the store (SQLAlchemy) is reached through the arguments: importing this module for
    # ROLES, as the `disparo tui` registration does, stays light
    from engine.store import Store
    from engine.store.commands import Command

ROLES = ("viewer", "operator", "admin")
#: the least role that may do each action
NEEDS = {
    "pause": "operator",
    "resume": "operator",
    "cancel": "operator",
    "priority": "operator",
    "suppress": "operator",
    "unsuppress": "operator",
    "override": "admin",
    "clear-override": "admin",
}
PAUSABLE = ("scheduled", "sending", "held")
CANCELLABLE = ("scheduled", "sending", "held", "paused")


def allowed(role: str, action: str) -> bool:
    """May ``role`` do ``action``?"""
    need = NEEDS.get(action)
    return need is not None and role in ROLES and ROLES.index(role) >= ROLES.index(need)


class ActionRefused(Exception):
    """An action that cannot be done; the message says why and what would work."""


def actor() -> str:
    """Who is acting: $DISPARO_ACTOR, else the system user (recorded in the audit log)."""
    return os.environ.get("DISPARO_ACTOR") or getpass.getuser()


@dataclass(frozen=True)
class Applied:
    command: Command
    ok: bool
    message: str
    campaign_id: int | None = None
    status: str | None = None
    previous: str | None = None


def _target(command: Command, kind: str) -> str:
    prefix, _, value = command.target.partition(":")
    if prefix != kind or not value:
        raise ActionRefused(f"`{command.action}` needs a {kind} target, not `{command.target}`")
    return value


def _campaign_id(command: Command) -> int:
    value = _target(command, "campaign")
    if not value.isdigit():
        raise ActionRefused(f"`{value}` is not a campaign id")
    return int(value)


def normalise_suppression(address: str) -> tuple[str, str]:
    """(kind, key) for an address typed by an operator: an e-mail or a phone number."""
    text = address.strip()
    if "@" in text:
        checked = normalise_email(text)
        if checked.value is None:
            raise ActionRefused(checked.error or f"`{text}` is not a valid e-mail address")
        return "email", suppression_key("email", checked.value)
    checked = normalise_phone(text)
    if checked.value is None:
        raise ActionRefused(checked.error or f"`{text}` is not a valid phone number")
    return "phone", checked.value


def apply(store: Store, command: Command) -> Applied:
    """Apply one pending command (blocking; in its own transaction)."""
    try:
        if not allowed(command.role, command.action):
            need = NEEDS.get(command.action)
            raise ActionRefused(
                f"the {command.role} role may not {command.action}"
                + (f"; it needs {need}" if need else " (unknown action)")
            )
        return _apply(store, command)
    except ActionRefused as exc:
        store.commands.finish(command.id, applied=False, result=str(exc))
        return Applied(command, False, str(exc))


def _apply(store: Store, command: Command) -> Applied:
    d = store.campaigns
    action, actor, args = command.action, command.actor, dict(command.args)
    reason = str(args.get("reason") or "") or None
    with store.write() as c:
        if action in ("pause", "resume", "cancel", "priority"):
            cid = _campaign_id(command)
            campaign = d.get(cid, content=False, conn=c)
            if campaign is None:
                raise ActionRefused(f"there is no campaign {cid}")
            if action == "priority":
                priority = int(args.get("priority", 0))
                d.set_fields(cid, priority=priority, conn=c)
                store.audit.record(
                    actor,
                    "campaign.priority",
                    f"campaign:{cid}",
                    {"from": campaign.priority, "to": priority},
                    conn=c,
                )
                done = f"campaign {cid} priority {campaign.priority} -> {priority}"
                status = previous = None
            else:
                status, expect, only = {
                    "pause": (
                        "paused",
                        PAUSABLE,
                        "only scheduled, sending or held campaigns can be paused",
                    ),
                    "resume": ("scheduled", ("paused",), "only a paused campaign is resumed"),
                    "cancel": ("cancelled", CANCELLABLE, "it has nothing left to cancel"),
                }[action]
                if campaign.status not in expect:
                    raise ActionRefused(f"campaign {cid} is {campaign.status}: {only}")
                values = {"finished_at": store.clock.now()} if action == "cancel" else None
                previous = d.set_status(
                    cid, status, actor=actor, reason=reason, expect=expect, values=values, conn=c
                )
                if previous is None:
                    raise ActionRefused(f"campaign {cid} changed meanwhile; try again")
                done = f"campaign {cid}: {previous} -> {status}"
                if action == "cancel":
                    left = d.close_out(cid, "cancelled", reason or "cancelled", conn=c)
                    done += f" ({left:,} deliveries not sent)"
            if not store.commands.finish(command.id, applied=True, result=done, conn=c):
                raise _AlreadyApplied()
            result = Applied(command, True, done, cid, status, previous)
        elif action in ("override", "clear-override"):
            name = _target(command, "account")
            states = store.accounts.states()
            if name not in states:
                raise ActionRefused(
                    f"there is no account {name!r} (accounts: "
                    f"{', '.join(sorted(states)) or 'none yet'})"
                )
            if action == "override":
                if not reason:
                    raise ActionRefused("an override needs a reason (D16)")
                now = store.clock.now()
                store.accounts.set_guard(
                    name,
                    actor=actor,
                    audit="account.override",
                    detail={"reason": reason},
                    override_by=actor,
                    override_reason=reason,
                    override_at=now,
                    guard_state="ok",
                    conn=c,
                )
                done = f"account {name}: the guard is overridden by {actor} ({reason})"
            else:
                store.accounts.set_guard(
                    name,
                    actor=actor,
                    audit="account.override-cleared",
                    detail={"reason": reason},
                    override_by=None,
                    override_reason=None,
                    override_at=None,
                    conn=c,
                )
                done = f"account {name}: override cleared; the guard applies again"
            if not store.commands.finish(command.id, applied=True, result=done, conn=c):
                raise _AlreadyApplied()
            result = Applied(command, True, done)
        elif action in ("suppress", "unsuppress"):
            kind, key = normalise_suppression(_target(command, "address"))
            if action == "suppress":
                added = store.suppressions.add(
                    kind, key, origin="manual", actor=actor, reason=reason, conn=c
                )
                done = f"{key} suppressed" if added else f"{key} was already suppressed"
            else:
                if not reason:
                    raise ActionRefused("removing a suppression needs a reason")
                gone = store.suppressions.remove(kind, key, actor=actor, reason=reason, conn=c)
                if gone is None:
                    raise ActionRefused(f"{key} is not suppressed")
                done = f"{key}: the {gone.origin} suppression is lifted"
            if not store.commands.finish(command.id, applied=True, result=done, conn=c):
                raise _AlreadyApplied()
            result = Applied(command, True, done)
        else:
            raise ActionRefused(f"unknown action {action!r}")
    return result


class _AlreadyApplied(Exception):
    pass


async def apply_pending(
    store: Store,
    plugins: Plugins | None = None,
    *,
    on_change: Callable[..., Awaitable[Any]] | None = None,
) -> list[Applied]:
    """Apply every pending command, oldest first."""
    done: list[Applied] = []
    for command in await store.run(store.commands.pending):
        try:
            applied = await store.run(apply, store, command)
        except _AlreadyApplied:
            continue  # another engine node applied it first
        done.append(applied)
        if applied.ok and applied.status is not None and on_change is not None:
            await on_change(applied.campaign_id, applied.status, applied.previous, command.actor)
    return done


async def submit_and_apply(
    store: Store,
    *,
    actor: str,
    role: str,
    action: str,
    target: str,
    args: dict[str, Any] | None = None,
) -> Applied:
    """What the CLI does: queue a command and apply it now."""
    command_id = await store.run(
        lambda: store.commands.submit(
            actor=actor, role=role, action=action, target=target, args=args
        )
    )
    command = await store.run(store.commands.get, command_id)
    assert command is not None
    try:
        return await store.run(apply, store, command)
    except _AlreadyApplied:
        applied = await store.run(store.commands.get, command_id)
        assert applied is not None
        return Applied(applied, applied.status == "applied", applied.result or "")
