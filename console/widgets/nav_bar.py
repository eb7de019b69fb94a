"""Provides NavBar: the clickable list of views at the top of every screen."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.events import Click
from textual.widgets import Static

VIEWS: tuple[tuple[str, str, str], ...] = (
    ("1", "overview", "Overview"),
    ("2", "conversations", "Conversations"),
    ("3", "routing", "Routing"),
    ("4", "dead", "Dead letters"),
    ("5", "config", "Config"),
    ("6", "analytics", "Analytics"),
)
"""(key, mode, label) of every top-level view, in key order."""


class NavTab(Static):
    """One view's tab; clicking it switches to that view."""

    def __init__(self, key: str, mode: str, label: str, *, current: bool) -> None:
        super().__init__(f"{key} {label}", markup=False, classes="-current" if current else "")
        self.mode = mode

    def on_click(self, event: Click) -> None:
        event.stop()
        if self.mode == "help":
            self.app.action_help()  # type: ignore[attr-defined]
        else:
            self.app.switch_mode(self.mode)


class NavBar(Horizontal):
    """Tabs for the six views plus help; the current view is highlighted."""

    def __init__(self, current: str) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        for key, mode, label in VIEWS:
            yield NavTab(key, mode, label, current=mode == self.current)
        yield NavTab("?", "help", "Help", current=False)
