"""Provides HelpModal: what the current view shows and every key that works on it."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

_GLOBAL = (
    ("1 … 5", "switch view: overview, conversations, routing, dead letters, config"),
    ("? / f1", "this help"),
    ("tab / shift+tab", "move between widgets"),
    ("q / ctrl+q", "quit"),
    ("mouse", "click tabs, rows and buttons; wheel scrolls"),
)


class HelpModal(ModalScreen[None]):
    """Keyboard help for one screen."""

    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "Close")]

    def __init__(self, title: str, about: str, keys: list[tuple[str, str]]) -> None:
        super().__init__()
        self.title_text = title
        self.about = about
        self.keys = keys

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        for key, description in [*self.keys, *_GLOBAL]:
            table.add_row(Text(key), Text(description))
        with VerticalScroll(id="help-box"):
            yield Static(Text(f"{self.title_text} — keys", style="bold"), id="help-title")
            if self.about:
                yield Static(Text(self.about), id="help-about")
            yield Static(table, id="help-keys")
            yield Static(Text("Press escape to close.", style="dim"))

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
