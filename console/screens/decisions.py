"""Provides DecisionsScreen: recent routing decisions and how they split by crew and source."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Static

from console.format import clock_time, literal, since
from console.screens.base import LiveScreen
from console.screens.detail import ConversationDetailScreen
from console.snapshots import DecisionsData
from console.widgets.live_table import LiveTable

WINDOWS = ((3600.0, "last hour"), (86400.0, "last 24 hours"), (7 * 86400.0, "last 7 days"))
SOURCE_STYLE = {"engine": "cyan", "rules": "green", "fallback": "bold yellow", "default": "dim"}


def _counts(title: str, counts: tuple[tuple[str, int], ...], styles: dict[str, str]) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", box=None, padding=(0, 1),
                  show_header=False, expand=True)
    table.add_column(no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    total = sum(n for _k, n in counts) or 1
    for key, n in counts[:6]:
        table.add_row(literal(key or "-", 18, styles.get(key, "")), Text(f"{n:,} ({n / total:.0%})"))
    if not counts:
        table.add_row(Text("none", style="dim"), Text(""))
    return table


class DecisionsScreen(LiveScreen):
    """The newest 200 routing decisions plus counts per crew and per source."""

    NAV = "routing"
    VIEW_TITLE = "Routing decisions"
    HELP = ("Which crew answers which conversation, decided by whom (engine, rules, fallback, "
            "default) and why, newest first. The counts above cover the chosen window "
            "(t cycles 1 hour, 24 hours, 7 days). Enter opens the conversation.")
    BINDINGS = [
        Binding("t", "cycle_window", "Window"),
        Binding("enter", "open", "Open", show=False),
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.window = 0

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="decision-counts"):
            yield Static(id="per-crew")
            yield Static(id="per-source")
        table = LiveTable(id="decisions")
        table.set_columns(("at", "Time"), ("age", "Age"), ("conversation", "Conversation"),
                          ("crew", "Crew"), ("source", "Source"), ("confidence", "Conf."),
                          ("reason", "Reason"))
        yield table

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(LiveTable).focus()

    def query_args(self) -> float:
        return WINDOWS[self.window][0]

    def fetch(self, args: float) -> DecisionsData:
        return self.ctx.reader.decisions(args)

    def status_text(self, data: DecisionsData) -> str:
        return f"{len(data.rows)} most recent decisions · counts over the {WINDOWS[self.window][1]}"

    def show(self, data: DecisionsData) -> None:
        label = WINDOWS[self.window][1]
        self.query_one("#per-crew", Static).update(_counts(f"Per crew, {label}", data.per_crew, {}))
        self.query_one("#per-source", Static).update(
            _counts(f"Per source, {label}", data.per_source, SOURCE_STYLE))
        rows = [(str(d.id), (
            literal(clock_time(d.decided_at), 8),
            literal(since(d.decided_at, data.now), 4),
            literal(f"{d.account_id}/{d.conversation_id}", 14),
            literal(d.crew, 14),
            literal(d.source, 9, SOURCE_STYLE.get(d.source, "")),
            literal("-" if d.confidence is None else f"{d.confidence:.2f}", 5),
            literal(d.reason, 70),
        )) for d in data.rows]
        self.query_one(LiveTable).sync(rows)

    def action_cycle_window(self) -> None:
        self.window = (self.window + 1) % len(WINDOWS)
        self.reload()

    @on(DataTable.RowSelected, "#decisions")
    def _row_selected(self) -> None:
        self.action_open()

    def action_open(self) -> None:
        key = self.query_one(LiveTable).current_key
        if key is None or self.data is None:
            return
        for d in self.data.rows:
            if str(d.id) == key:
                self.app.push_screen(ConversationDetailScreen(self.ctx, d.account_id, d.conversation_id))
                return
