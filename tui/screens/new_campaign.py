"""The "New campaign" form ("Nova campanha", seed 002), reached from Campaigns with ``n``: the
sender account, the groups with their live counts, subject, template file, start and pace, and
a preview of the first recipient's message rendered in the sandbox. Operator role or higher;
the campaign is written by the same path as ``disparo campaign new`` (audited)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Footer, Input, Label, Select, SelectionList, Static

from engine.intake.compose import CampaignRequest, ComposeError, create
from engine.mailing_names import WHATSAPP_CHANNELS
from engine.render import compile_html, compile_text, html_to_text, variables
from tui.backend import Backend
from tui.screens.live import LiveScreen

#: the action the form needs (tui.backend.UI_NEEDS)
ACTION = "compose"


@dataclass(frozen=True)
class GroupCount:
    name: str
    members: int
    suppressed: int


@dataclass(frozen=True)
class FormModel:
    """What the form shows: the groups with their counts, and the preview."""

    groups: list[GroupCount]
    preview: str
    recipients: int


def address_kinds(backend: Backend) -> dict[str, str]:
    """Each channel's contact address, from the plugins (e-mail for ``email``, else phone)."""
    if backend.plugins is not None:
        return {n: c.address_kind for n, c in backend.plugins.channels().items()}
    return {
        a.channel: "email" if a.channel == "email" else "phone"
        for a in backend.config.accounts.values()
    }


def read_template(backend: Backend, path: str) -> str:
    """The template file (relative to the configuration's folder), decoded as the importer
    decodes an HTML companion; ``OSError`` when it cannot be read."""
    file = Path(path).expanduser()
    if not file.is_absolute():
        file = backend.config.root / file
    data = file.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def form_model(
    backend: Backend, account: str | None, groups: list[str], subject: str, template: str
) -> FormModel:
    """The groups' counts and the preview of the first recipient's message (sandboxed)."""
    found = [GroupCount(g.name, g.members, g.suppressed) for g in backend.store.groups.all()]
    chosen = [g for g in found if g.name in groups]
    recipients = sum(g.members - g.suppressed for g in chosen)
    settings = backend.config.accounts.get(account or "")
    if settings is None or not groups:
        return FormModel(found, "Choose an account and at least one group to see a preview.", 0)
    contact = backend.store.groups.first_contact(groups)
    if contact is None:
        return FormModel(found, "The groups chosen have no member yet.", recipients)
    seen = variables(
        name=contact["name"],
        email=contact["email"],
        phone=contact["phone"],
        external_key=contact["external_key"],
        fields=contact["fields"],
    )
    who = contact["email"] or contact["phone"] or "?"
    if settings.channel in WHATSAPP_CHANNELS:
        return FormModel(found, f"To {who}: the approved template `{template}`.", recipients)
    lines = [f"To: {who}"]
    try:
        if settings.channel == "email":
            lines.append("Subject: " + compile_text(subject).render(seen))
        body = read_template(backend, template) if template.strip() else ""
        if body:
            if settings.channel == "email":
                lines += ["", html_to_text(compile_html(body).render(seen))]
            else:
                lines += ["", compile_text(body).render(seen)]
        else:
            lines += ["", "(no template file yet)"]
    except OSError as exc:
        lines.append(f"the template file cannot be read: {exc.strerror or exc}")
    except Exception as exc:
        lines.append(f"the template does not render: {exc} (N28)")
    return FormModel(found, "\n".join(lines), recipients)


class NewCampaignScreen(LiveScreen):
    """Compose a campaign for groups; start it now (or at its start) or keep it as a draft."""

    LABEL = "New campaign"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Back"),
        Binding("ctrl+s", "create(False)", "Start"),
        Binding("ctrl+d", "create(True)", "Save draft"),
        Binding("ctrl+u", "usage", "Account usage"),
    ]

    def __init__(self, backend: Backend, every: float = 1.0) -> None:
        super().__init__(backend, every)
        self.counts: dict[str, GroupCount] = {}

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        accounts = [
            (f"{name} ({a.channel})", name) for name, a in self.backend.config.accounts.items()
        ]
        with VerticalScroll(id="new-campaign"):
            yield Label("Sender account")
            yield Select(accounts, id="account", prompt="Choose the account")
            yield Label("Groups (space selects; members, suppressed)")
            yield SelectionList[str](id="groups")
            yield Input(placeholder="Name (default: the subject)", id="name")
            yield Input(placeholder="Subject (e-mail): Olá {{ nome }}", id="subject")
            yield Input(
                placeholder="Template file: the HTML body (e-mail), the text (SMS), or the "
                "WhatsApp template's name",
                id="template",
            )
            yield Input(placeholder="Start: YYYY-MM-DDTHH:MM (empty: now)", id="start")
            yield Input(
                placeholder="Pace: 15/20m = 15 % every 20 min (empty: all at once)", id="pace"
            )
            yield Static("", id="audience", classes="caption")
            yield Static("", id="preview")
            yield Static("", id="problems")
            with Horizontal():
                yield Button("Start", id="go", variant="primary")
                yield Button("Save draft", id="draft")
                yield Button("Cancel", id="cancel")
        yield Footer(compact=True)

    def _value(self, selector: str) -> str:
        return self.query_one(selector, Input).value

    def _account(self) -> str | None:
        value = self.query_one("#account", Select).value
        return value if isinstance(value, str) else None

    def _groups(self) -> list[str]:
        return [str(v) for v in self.query_one("#groups", SelectionList).selected]

    def params(self) -> Any:
        return (self._account(), self._groups(), self._value("#subject"), self._value("#template"))

    def fetch(self, params: Any) -> FormModel:
        account, groups, subject, template = params
        return form_model(self.backend, account, groups, subject, template)

    def show(self, data: FormModel) -> None:
        listing = self.query_one("#groups", SelectionList)
        chosen = set(self._groups())
        known = {g.name for g in data.groups}
        if set(self.counts) != known:
            listing.clear_options()
            for g in data.groups:
                listing.add_option((self._prompt(g), g.name, g.name in chosen))
        else:
            for index, g in enumerate(data.groups):
                if self.counts.get(g.name) != g:
                    listing.replace_option_prompt_at_index(index, self._prompt(g))
        self.counts = {g.name: g for g in data.groups}
        self.query_one("#audience", Static).update(
            Text(
                f"about {data.recipients:,} recipient(s) today (members minus suppressed; "
                "frozen when it starts)"
            )
        )
        self.query_one("#preview", Static).update(Text(data.preview))

    @staticmethod
    def _prompt(g: GroupCount) -> Text:
        return Text(f"{g.name}  ({g.members:,}, {g.suppressed:,} suppressed)")

    @on(Input.Changed)
    @on(Select.Changed)
    @on(SelectionList.SelectedChanged)
    def changed(self) -> None:
        self.reload()

    @on(Button.Pressed, "#go")
    def pressed_go(self) -> None:
        self.action_create(False)

    @on(Button.Pressed, "#draft")
    def pressed_draft(self) -> None:
        self.action_create(True)

    @on(Button.Pressed, "#cancel")
    def action_close(self) -> None:
        self.dismiss()

    def action_usage(self) -> None:
        from tui.screens.account import AccountScreen

        account = self._account()
        if account is None:
            self.notify("Choose an account first.", severity="warning")
            return
        self.app.push_screen(AccountScreen(self.backend, account, self.every))

    def _request(self, draft: bool) -> CampaignRequest | str:
        account = self._account()
        if account is None:
            return "account: choose the sender account (D10)"
        settings = self.backend.config.accounts[account]
        template = self._value("#template").strip()
        body: str | None = None
        if template and settings.channel not in WHATSAPP_CHANNELS:
            try:
                body = read_template(self.backend, template)
            except OSError as exc:
                return f"template: {template} cannot be read ({exc.strerror or exc})"
        start: datetime | None = None
        if self._value("#start").strip():
            try:
                start = datetime.fromisoformat(self._value("#start").strip())
            except ValueError:
                return "start: write YYYY-MM-DDTHH:MM, local time (D2)"
            if start.tzinfo is None:
                start = start.replace(tzinfo=self.backend.tz)
        email = settings.channel == "email"
        return CampaignRequest(
            account=account,
            groups=self._groups(),
            name=self._value("#name").strip() or None,
            subject=self._value("#subject") or None,
            html=body if email else None,
            text=body if not email else None,
            template=template if settings.channel in WHATSAPP_CHANNELS else None,
            start=start,
            pace=self._value("#pace").strip() or None,
            draft=draft,
            origin="operator",
        )

    def action_create(self, draft: bool) -> None:
        if not self.backend.may(ACTION):
            self.notify(self.backend.refusal(ACTION), severity="error")
            return
        request = self._request(draft)
        if isinstance(request, str):
            self.query_one("#problems", Static).update(Text(request, style="bold red"))
            return
        self._create(request)

    @work(thread=True, exclusive=True, group="action", exit_on_error=False)
    def _create(self, request: CampaignRequest) -> None:
        b = self.backend
        try:
            campaign_id, _ = create(b.store, b.config, request, address_kinds(b), actor=b.actor)
        except ComposeError as exc:
            text = "\n".join(f"{p.field}: {p.message}" for p in exc.problems)
            self.app.call_from_thread(
                self.query_one("#problems", Static).update, Text(text, style="bold red")
            )
            return
        what = "saved as a draft" if request.draft else "created"
        self.app.call_from_thread(self.notify, f"Campaign {campaign_id} {what}.")
        self.app.call_from_thread(self.dismiss)
