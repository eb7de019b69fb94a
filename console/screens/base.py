"""Provides LiveScreen: a view that re-reads the database in a thread and redraws itself.

Every ``POLL_SECONDS`` the visible screen asks SQLite for ``PRAGMA data_version`` (a few
microseconds); it re-runs its queries when another connection has committed, or at least
every ``refresh_seconds`` so that ages stay true. New data therefore shows within about a
quarter of a second, and an idle database costs almost nothing. A view whose queries are
slow (a free-text filter scans every conversation) waits four times its own query time
between refreshes, so the reader never spends more than a fifth of its time in SQLite.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.screen import Screen
from textual.worker import Worker, WorkerState, get_current_worker

from console.context import ConsoleContext
from console.messages import DataLoaded, DataUnchanged, OperatorDone, ReadFailed
from console.reader import ReadError
from console.widgets.nav_bar import NavBar
from console.widgets.status_line import StatusLine


class LiveScreen(Screen[None]):
    """Base class of the live views: subclasses implement fetch() and show()."""

    NAV: ClassVar[str] = ""
    """The view highlighted in the nav bar."""
    VIEW_TITLE: ClassVar[str] = ""
    """The view's name in the help screen."""
    HELP: ClassVar[str] = ""
    """What this view shows, for the help screen."""
    POLL_SECONDS: ClassVar[float] = 0.25

    def __init__(self, ctx: ConsoleContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.data: Any = None
        self._generation = 0
        self._busy = False
        self._loader: Worker[None] | None = None
        self._version: int | None = None
        self._loaded_at = float("-inf")
        self._cost = 0.0

    # -- layout ---------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        from textual.widgets import Footer

        yield NavBar(self.NAV)
        yield from self.compose_body()
        yield StatusLine(id="status")
        yield Footer()

    def compose_body(self) -> ComposeResult:
        yield from ()

    # -- subclass hooks -------------------------------------------------------------------
    def query_args(self) -> Any:
        """Captures, on the UI thread, what the next fetch needs (filters, page...)."""
        return None

    def fetch(self, args: Any) -> Any:
        """Reads the data (runs in a worker thread: no widget access here)."""
        raise NotImplementedError

    def show(self, data: Any) -> None:
        """Renders fresh data (UI thread)."""
        raise NotImplementedError

    def status_text(self, data: Any) -> str:
        return ""

    # -- refresh loop -----------------------------------------------------------------------
    def on_mount(self) -> None:
        self.set_interval(self.POLL_SECONDS, self._tick)

    def on_screen_resume(self) -> None:
        self.reload()

    def _tick(self) -> None:
        # Hidden views (another mode, or a screen pushed on top) do not poll at all.
        if self._busy or not self.is_current:
            return
        if time.monotonic() - self._loaded_at < min(4 * self._cost, self.ctx.refresh_seconds):
            return
        self._start(force=False)

    def reload(self) -> None:
        """Re-reads now, whatever the database version (filters changed, a write was made)."""
        self._start(force=True)

    def _start(self, *, force: bool) -> None:
        self._generation += 1
        self._busy = True
        self._loader = self._load(self._generation, force, self.query_args(), self._version, self._loaded_at)

    @work(thread=True, exclusive=True, group="refresh", exit_on_error=False)
    def _load(self, generation: int, force: bool, args: Any, seen: int | None, loaded_at: float) -> None:
        reader = self.ctx.reader
        try:
            version = reader.data_version()
            fresh = time.monotonic() - loaded_at < self.ctx.refresh_seconds
            if not force and version == seen and fresh:
                self.post_message(DataUnchanged(generation))
                return
            started = time.monotonic()
            data = self.fetch(args)
            cost = time.monotonic() - started
        except ReadError as exc:
            self.post_message(ReadFailed(generation, str(exc)))
            return
        if not get_current_worker().is_cancelled:
            self.post_message(DataLoaded(generation, data, version, cost))

    @on(Worker.StateChanged)
    def _worker_finished(self, event: Worker.StateChanged) -> None:
        # Whatever happened (even a bug raising in fetch), the next tick may run again. Only
        # the latest read counts: the end of one it superseded must not let a tick start a
        # read that cancels it (a page or filter change would then wait for the next refresh).
        if event.worker is self._loader and event.state in (
            WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED
        ):
            self._busy = False

    def on_data_loaded(self, message: DataLoaded) -> None:
        message.stop()
        if message.generation != self._generation:
            return  # an older read that lost the race with a newer one
        self._version = message.version
        self._loaded_at = time.monotonic()
        self._cost = message.cost
        self.data = message.data
        self.show(message.data)
        self.query_one(StatusLine).show(self.ctx.db_label, self.status_text(message.data),
                                        getattr(message.data, "now", None))

    def on_data_unchanged(self, message: DataUnchanged) -> None:
        message.stop()

    def on_operator_done(self, message: OperatorDone) -> None:
        """An operator's write finished (views that offer one): say how it went, read again."""
        message.stop()
        self.notify(message.text, severity="information" if message.ok else "error")
        self.reload()

    def on_read_failed(self, message: ReadFailed) -> None:
        # Not stopped: the app turns it into the "database problem" screen.
        self._version = None
        if message.generation != self._generation:
            message.stop()
            return
        self.query_one(StatusLine).error(message.error)
