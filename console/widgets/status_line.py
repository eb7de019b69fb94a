"""Provides StatusLine: one line of context under a view (what is shown, how fresh)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from console.format import clean, clock_time


class StatusLine(Static):
    """``connector.db · <what> · updated HH:MM:SS``; red while reads fail."""

    def show(self, db_label: str, what: str, updated_at: float | None) -> None:
        self.remove_class("-error")
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(clean(db_label), style="bold")
        if what:
            text.append(f" · {clean(what)}")
        text.append(f" · updated {clock_time(updated_at)}", style="dim")
        self.update(text)

    def error(self, message: str) -> None:
        self.add_class("-error")
        self.update(Text(clean(message), no_wrap=True, overflow="ellipsis"))
