"""Provides ConsoleApp (the Textual application) and make_console (its factory)."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

from textual import on
from textual.app import App
from textual.binding import Binding
from textual.worker import Worker, WorkerState

from console.context import ConsoleContext
from console.messages import ReadFailed
from console.screens.analytics import AnalyticsScreen
from console.screens.config import ConfigScreen
from console.screens.conversations import ConversationsScreen
from console.screens.dead_letters import DeadLettersScreen
from console.screens.decisions import DecisionsScreen
from console.screens.help_modal import HelpModal
from console.screens.overview import OverviewScreen
from console.screens.problem import ProblemScreen
from console.settings import ConsoleSettings
from console.widgets.nav_bar import VIEWS

_SCREENS = {"overview": OverviewScreen, "conversations": ConversationsScreen,
            "routing": DecisionsScreen, "dead": DeadLettersScreen, "config": ConfigScreen,
            "analytics": AnalyticsScreen}


class ConsoleApp(App[None]):
    """The ops console: six live views over the connector's SQLite state."""

    CSS_PATH = "app.tcss"
    TITLE = "Chatwoot connector console"
    BINDINGS = [
        *(Binding(key, f"switch_mode('{mode}')", label, show=False) for key, mode, label in VIEWS),
        Binding("question_mark,f1", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, ctx: ConsoleContext) -> None:
        super().__init__()
        self.ctx = ctx
        for mode, screen in _SCREENS.items():
            self.add_mode(mode, partial(screen, ctx))

    def on_mount(self) -> None:
        self.switch_mode("overview")

    def on_unmount(self) -> None:
        self.ctx.reader.close()

    def action_help(self) -> None:
        screen = self.screen
        if isinstance(screen, HelpModal):
            return
        keys: list[tuple[str, str]] = []
        seen: set[str] = set()
        for binding in getattr(type(screen), "BINDINGS", []):
            if isinstance(binding, Binding) and binding.description and binding.action not in seen:
                seen.add(binding.action)
                keys.append((binding.key.replace(",", " / ").replace("_square_bracket", " ["),
                             binding.description))
        title = getattr(screen, "VIEW_TITLE", "") or type(screen).__name__
        self.push_screen(HelpModal(title, getattr(screen, "HELP", ""), keys))

    def on_read_failed(self, message: ReadFailed) -> None:
        """Shows (or updates) the one-line database problem screen over the current view."""
        if isinstance(self.screen, ProblemScreen):
            self.screen.update_message(message.error)
        else:
            self.push_screen(ProblemScreen(self.ctx, message.error))

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        # Workers run with exit_on_error=False: a bug in one refresh becomes a notification
        # (the next refresh tries again) instead of a traceback that ends the console.
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            error = event.worker.error
            self.notify(f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}",
                        title="Internal error", severity="error", timeout=8)


def make_console(
    settings: ConsoleSettings, *, clock: Callable[[], float] = time.time, actor: str | None = None
) -> ConsoleApp:
    """Builds the console for the CLI and the tests alike.

    Args:
        settings: database path and refresh interval.
        clock: "now" for ages and windows (tests pass a fixed one).
        actor: who operator writes are recorded as (default ``console:<login>``).
    """
    ctx = ConsoleContext.for_path(settings.db_path, refresh_seconds=settings.refresh_seconds,
                                  clock=clock, actor=actor)
    return ConsoleApp(ctx)
