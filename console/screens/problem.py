"""Provides ProblemScreen: one clear line when the database cannot be read, retried until it can."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Center, Middle
from textual.screen import Screen
from textual.widgets import Footer, Static

from console.context import ConsoleContext
from console.messages import DataLoaded, ReadFailed
from console.reader import ReadError


class ProblemScreen(Screen[None]):
    """Covers the view while the database is missing, locked or of another schema."""

    BINDINGS = [Binding("r", "retry", "Retry now")]
    VIEW_TITLE = "Database unavailable"
    HELP = ("The console cannot read the database. The message says why; the console retries "
            "on its own and returns to the view as soon as the database is readable.")

    def __init__(self, ctx: ConsoleContext, message: str) -> None:
        super().__init__()
        self.ctx = ctx
        self.message = message
        self._leaving = False

    def compose(self) -> ComposeResult:
        with Middle(), Center():
            yield Static(Text("⚠ Database unavailable", style="bold red"), id="problem-title")
        with Center():
            yield Static(Text(self.message), id="problem-message")
        with Center():
            yield Static(Text(f"Retrying every {self.ctx.refresh_seconds:g}s · r retry now · q quit",
                              style="dim"), id="problem-hint")
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(self.ctx.refresh_seconds, self.action_retry)

    def update_message(self, message: str) -> None:
        self.message = message
        # A second failure can arrive after the screen was pushed but before it composed;
        # compose() then shows self.message, so there is nothing to update yet.
        for widget in self.query("#problem-message").results(Static):
            widget.update(Text(message))

    def action_retry(self) -> None:
        self._check()

    @work(thread=True, exclusive=True, group="problem", exit_on_error=False)
    def _check(self) -> None:
        try:
            self.ctx.reader.check()
        except ReadError as exc:
            self.post_message(ReadFailed(0, str(exc)))
            return
        self.post_message(DataLoaded(0, None, 0))

    def on_read_failed(self, message: ReadFailed) -> None:
        message.stop()
        if message.error != self.message:
            self.update_message(message.error)

    def on_data_loaded(self, message: DataLoaded) -> None:
        message.stop()
        # Two checks can both succeed (a retry key while the timer's check runs: a superseded
        # thread still posts its answer); the second must not pop the view underneath.
        if not self._leaving:
            self._leaving = True
            self.dismiss()
