"""An account's detail ("Exibir uso das contas", seed 002): its settings (never a secret), the
messages it sent per hour over the last 24 hours, and its bounce and complaint rates against
its limits (D14, D15), live."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Footer, Static

from engine.sending.usage import AccountUsage, account_usage
from tui.backend import Backend
from tui.screens.live import LiveScreen


class AccountScreen(LiveScreen):
    """One sender account's usage."""

    LABEL = "Account"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Back")]

    def __init__(self, backend: Backend, account: str, every: float = 1.0) -> None:
        super().__init__(backend, every)
        self.account = account

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        with VerticalScroll():
            yield Static("", id="rates")
            yield Static("", id="hours")
            yield Static("", id="settings")
        yield Footer(compact=True)

    def fetch(self, params: Any) -> AccountUsage | None:
        settings = self.backend.config.accounts.get(self.account)
        if settings is None:
            return None
        return account_usage(self.backend.store, settings, self.backend.now())

    def show(self, data: AccountUsage | None) -> None:
        if data is None:
            self.query_one("#rates", Static).update(
                Text(f"There is no account {self.account} in the configuration.", style="red")
            )
            return
        r = data.rates

        def verdict(over: bool) -> Text:
            if over and r.judged:
                return Text("over the limit", style="bold red")
            if over:
                return Text(f"over, under min_sample ({r.limits.min_sample})", style="yellow")
            return Text("ok", style="green")

        rates = Text(f"Account {data.name} ({data.channel}) · last 24 h: {r.sent:,} sent\n")
        rates.append(
            f"bounces {r.bounces:,} = {r.bounce_rate:.2f} % of {r.limits.bounce_limit:g} % "
        )
        rates.append_text(verdict(r.bounces_over))
        rates.append(
            f"\ncomplaints {r.complaints:,} = {r.complaint_rate:.3f} % of "
            f"{r.limits.complaint_limit:g} % "
        )
        rates.append_text(verdict(r.complaints_over))
        self.query_one("#rates", Static).update(rates)
        peak = max((h.sent for h in data.hours), default=0) or 1
        hours = Table(title="Sent per hour (last 24 h)", title_justify="left", expand=False)
        hours.add_column("Hour")
        hours.add_column("Sent", justify="right")
        hours.add_column("")
        for h in data.hours:
            hours.add_row(
                self.backend.local(h.start).strftime("%d/%m %H:00"),
                f"{h.sent:,}",
                "█" * round(30 * h.sent / peak),
            )
        self.query_one("#hours", Static).update(hours)
        settings = Table(title="Settings", title_justify="left", show_header=False)
        settings.add_column("Setting")
        settings.add_column("Value")
        for key, value in data.settings.items():
            settings.add_row(key, "-" if value is None else str(value))
        self.query_one("#settings", Static).update(settings)

    def action_close(self) -> None:
        self.dismiss()
