"""Pause, resume, cancel and priority on the selected campaign (Campaigns, Campaign, Queues)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from textual.binding import Binding, BindingType

from engine.actions import CANCELLABLE, PAUSABLE
from tui.dialogs import Field, FormDialog, integer, required
from tui.screens.live import LiveScreen, PaletteEntry

#: binding action -> (engine action, the statuses it applies to, or None for any)
CAMPAIGN_ACTIONS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "pause": ("pause", PAUSABLE),
    "resume": ("resume", ("paused",)),
    "cancel_campaign": ("cancel", CANCELLABLE),
    "priority": ("priority", None),
}
CAMPAIGN_BINDINGS: list[BindingType] = [
    Binding("p", "pause", "Pause"),
    Binding("r", "resume", "Resume"),
    Binding("c", "cancel_campaign", "Cancel"),
    Binding("P", "priority", "Priority"),
]


class CampaignActions(LiveScreen):
    """Pause, resume, cancel and priority on the selected campaign."""

    def selected_campaign(self) -> tuple[int, str, int] | None:
        """(id, status, priority) of the campaign the actions apply to."""
        return None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        spec = CAMPAIGN_ACTIONS.get(action)
        if spec is None:
            return True
        need, statuses = spec
        if not self.backend.may(need):
            return False  # hidden: this role may not
        selected = self.selected_campaign()
        if selected is None:
            return None
        if statuses is not None and selected[1] not in statuses:
            return None  # shown greyed: not for a campaign in this state
        return True

    def _target(self, action: str) -> tuple[int, str, int] | None:
        if not self.backend.may(action):
            self.notify(self.backend.refusal(action), title="Refused", severity="error")
            return None
        selected = self.selected_campaign()
        if selected is None:
            self.notify("select a campaign first", severity="warning")
        return selected

    def action_pause(self) -> None:
        selected = self._target("pause")
        if selected is None:
            return
        cid = selected[0]
        self.ask(
            FormDialog(
                f"Pause campaign {cid}?",
                "Sending stops within a second; messages already handed over finish. A resume "
                "shifts the pacing schedule by the time spent paused (D7).",
                [Field("reason", "Reason (optional, kept in the audit log)")],
                ok="Pause",
                danger=True,
            ),
            lambda values: self.act("pause", f"campaign:{cid}", {"reason": values["reason"]}),
        )

    def action_resume(self) -> None:
        selected = self._target("resume")
        if selected is not None:
            self.act("resume", f"campaign:{selected[0]}")

    def action_cancel_campaign(self) -> None:
        selected = self._target("cancel")
        if selected is None:
            return
        cid = selected[0]
        self.ask(
            FormDialog(
                f"Cancel campaign {cid}?",
                "Nothing more of it is sent: every recipient not handed over yet ends as "
                "cancelled. This cannot be undone.",
                [Field("reason", "Reason", check=required("a reason"))],
                ok="Cancel the campaign",
                danger=True,
            ),
            lambda values: self.act("cancel", f"campaign:{cid}", {"reason": values["reason"]}),
        )

    def action_priority(self) -> None:
        selected = self._target("priority")
        if selected is None:
            return
        cid, _, priority = selected
        self.ask(
            FormDialog(
                f"Priority of campaign {cid}",
                "Higher goes first on its account; it takes over at the next batch boundary (D11).",
                [Field("priority", "Priority", value=str(priority), check=integer)],
                ok="Set",
            ),
            lambda values: self.act(
                "priority", f"campaign:{cid}", {"priority": int(values["priority"])}
            ),
        )

    def palette(self) -> Iterable[PaletteEntry]:
        selected = self.selected_campaign()
        if selected is None:
            return
        cid, status, _ = selected
        entries: tuple[tuple[str, str, Callable[[], None]], ...] = (
            ("pause", "Pause", self.action_pause),
            ("resume", "Resume", self.action_resume),
            ("cancel_campaign", "Cancel", self.action_cancel_campaign),
            ("priority", "Change the priority of", self.action_priority),
        )
        for binding, title, run in entries:
            need, statuses = CAMPAIGN_ACTIONS[binding]
            if self.backend.may(need) and (statuses is None or status in statuses):
                yield f"{title} campaign {cid}", f"{need} (the campaign is {status})", run
