"""Modal dialogs: confirm (with a reason), ask for values, show a text or an error."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


@dataclass(frozen=True)
class Field:
    """One input of a ``FormDialog``: ``check`` returns an error message, or None when the
    value is fine."""

    name: str
    label: str
    value: str = ""
    placeholder: str = ""
    check: Callable[[str], str | None] | None = None


def required(what: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value.strip() else f"{what} is required"

    return check


def integer(value: str) -> str | None:
    try:
        int(value.strip())
    except ValueError:
        return "a whole number, e.g. 5 or -1"
    return None


class FormDialog(ModalScreen[dict[str, str] | None]):
    """A title, a question, some inputs, and OK / Cancel. Dismissed with the values (trimmed),
    or None. ``danger`` colours the OK button as a destructive action."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self,
        title: str,
        text: str = "",
        fields: Sequence[Field] = (),
        *,
        ok: str = "OK",
        danger: bool = False,
    ) -> None:
        super().__init__()
        self.title_text = title
        self.text = text
        self.fields = tuple(fields)
        self.ok = ok
        self.danger = danger

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Text(self.title_text), classes="dialog-title")
            if self.text:
                yield Static(Text(self.text), classes="dialog-text")
            for f in self.fields:
                yield Label(Text(f.label), classes="field-label")
                yield Input(value=f.value, placeholder=f.placeholder, id=f"field-{f.name}")
            yield Static("", id="problem", classes="dialog-problem")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.ok, id="ok", variant="error" if self.danger else "primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        if self.fields:
            self.query_one(f"#field-{self.fields[0].name}", Input).focus()
        else:
            self.query_one("#ok", Button).focus()

    @on(Button.Pressed, "#ok")
    @on(Input.Submitted)
    def submit(self) -> None:
        values = {
            f.name: self.query_one(f"#field-{f.name}", Input).value.strip() for f in self.fields
        }
        for f in self.fields:
            problem = f.check(values[f.name]) if f.check else None
            if problem:
                self.query_one("#problem", Static).update(Text(f"{f.label}: {problem}"))
                self.query_one(f"#field-{f.name}", Input).focus()
                return
        self.dismiss(values)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class TextDialog(ModalScreen[None]):
    """A scrollable text (a file's error report, the engine's log, an error)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("q", "close", "Close", show=False),
    ]

    def __init__(self, title: str, text: str, *, error: bool = False) -> None:
        super().__init__()
        self.title_text = title
        self.text = text
        self.error = error

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide" + (" error" if self.error else "")):
            yield Label(Text(self.title_text), classes="dialog-title")
            with VerticalScroll(classes="dialog-body"):
                yield Static(Text(self.text), id="text")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Close", id="close", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#close", Button).focus()

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        self.dismiss(None)
