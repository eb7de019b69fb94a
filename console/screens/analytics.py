"""Provides AnalyticsScreen: what the bot achieved (per crew, per rule), inboxes' hours, shadow answers."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from console.format import clock_time, literal
from console.screens.base import LiveScreen
from console.snapshots import AnalyticsData
from console.widgets.live_table import LiveTable

WINDOWS = (("24h", "last 24 hours"), ("7d", "last 7 days"))
COLUMNS = (("name", "Name"), ("conversations", "Convs"), ("answered", "Answers"), ("resolved", "Bot-resolved"),
           ("handoff", "Hand-off"), ("reasons", "Hand-off reasons"), ("reopen", "Reopened"),
           ("p50", "p50"), ("p95", "p95"), ("csat", "CSAT"), ("drafts", "Drafts"), ("shadow", "Shadow"))


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def figures_row(name: str, g: dict[str, Any]) -> tuple[Text, ...]:
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(g["handoff_reasons"].items(), key=lambda kv: -kv[1]))
    csat = "-" if g["csat_average"] is None else f"{g['csat_average']:.1f} ({g['csat_responses']})"
    return (literal(name or "-", 16), literal(g["conversations"], 6), literal(g["answered"], 7),
            literal(f"{g['resolved_by_bot']} ({_percent(g['resolved_by_bot_rate'])})", 12),
            literal(f"{g['handoffs']} ({_percent(g['handoff_rate'])})", 10), literal(reasons or "-", 30),
            literal(f"{g['reopened']} ({_percent(g['reopen_rate'])})", 9),
            literal(_seconds(g["reply_latency_p50_seconds"]), 6), literal(_seconds(g["reply_latency_p95_seconds"]), 6),
            literal(csat, 9), literal(g["drafts"], 6), literal(g["shadow_answers"], 6))


class AnalyticsScreen(LiveScreen):
    """Outcomes per crew and per rule over 24 h or 7 days, open inboxes and the newest shadow answers."""

    NAV = "analytics"
    VIEW_TITLE = "Analytics"
    HELP = ("What the bot achieved over the window (w switches last 24 hours / last 7 days): "
            "conversations served, answers, conversations resolved without a human, hand-offs and "
            "their reasons, reopened after the bot resolved them, reply latency p50/p95, CSAT "
            "(average rating and responses), drafts suggested and shadow answers recorded. Below: "
            "which inboxes are open now, the modes in force and the newest shadow answers (never "
            "sent to anyone). The same figures as GET /stats.")
    BINDINGS = [Binding("w", "cycle_window", "Window")]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.window = 0

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="analytics-body"):
            yield Static(id="analytics-totals")
            yield Static(Text("Per crew", style="bold"))
            crews = LiveTable(id="analytics-crews")
            crews.set_columns(*COLUMNS)
            yield crews
            yield Static(Text("Per routing rule", style="bold"))
            rules = LiveTable(id="analytics-rules")
            rules.set_columns(*COLUMNS)
            yield rules
            yield Static(id="analytics-inboxes")
            yield Static(id="analytics-shadow")

    def query_args(self) -> str:
        return WINDOWS[self.window][0]

    def fetch(self, args: str) -> AnalyticsData:
        return self.ctx.reader.analytics(args)

    def status_text(self, data: AnalyticsData) -> str:
        return f"Outcomes over the {WINDOWS[self.window][1]} · w switches the window"

    def show(self, data: AnalyticsData) -> None:
        t = data.totals
        totals = Text()
        totals.append(f"{WINDOWS[self.window][1].capitalize()}: ", style="bold")
        totals.append(f"{t['conversations']} conversations served · {t['answered']} answers · "
                      f"resolved by the bot {_percent(t['resolved_by_bot_rate'])} · "
                      f"hand-off {_percent(t['handoff_rate'])} · reopened {_percent(t['reopen_rate'])} · "
                      f"reply p50 {_seconds(t['reply_latency_p50_seconds'])} "
                      f"p95 {_seconds(t['reply_latency_p95_seconds'])} · CSAT "
                      + ("-" if t["csat_average"] is None else f"{t['csat_average']:.1f} ({t['csat_responses']})")
                      + f" · drafts {t['drafts']} · shadow {t['shadow_answers']} · reminders {t['reminders']}")
        self.query_one("#analytics-totals", Static).update(totals)
        self.query_one("#analytics-crews", LiveTable).sync(
            [(name, figures_row(name, g)) for name, g in data.crews.items()])
        self.query_one("#analytics-rules", LiveTable).sync(
            [(name, figures_row(name, g)) for name, g in data.rules.items()])
        self.query_one("#analytics-inboxes", Static).update(self._inboxes(data))
        self.query_one("#analytics-shadow", Static).update(self._shadow(data))

    @staticmethod
    def _inboxes(data: AnalyticsData) -> Text:
        out = Text()
        out.append("Inboxes with business hours\n", style="bold")
        if not data.inboxes:
            out.append("none configured: every inbox is served at any time\n", style="dim")
        for inbox in data.inboxes:
            out.append("● " if inbox.open_now else "○ ", style="green" if inbox.open_now else "yellow")
            out.append_text(literal(f"inbox {inbox.inbox_id}" + (f" {inbox.name}" if inbox.name else ""), 40))
            out.append(f" {inbox.detail}" + (f" · mode {inbox.mode}" if inbox.mode else "") + "\n", style="dim")
        out.append("Modes\n", style="bold")
        if not data.modes:
            out.append("every conversation in auto mode, no shadow crew\n", style="dim")
        for where, mode in data.modes.items():
            out.append_text(literal(where, 40))
            out.append(f": {mode}\n", style="cyan")
        return out

    @staticmethod
    def _shadow(data: AnalyticsData) -> Text:
        out = Text()
        out.append("Newest shadow answers (recorded, never sent)\n", style="bold")
        if not data.shadow:
            out.append("none\n", style="dim")
        for row in data.shadow[:20]:
            out.append(f"{clock_time(row['at'])} ", style="dim")
            out.append_text(literal(f"{row['account_id']}/{row['conversation_id']}", 12))
            out.append(" ")
            out.append_text(literal(row["crew"] or "-", 14, "magenta"))
            out.append(" ")
            out.append_text(literal(row["detail"], 100))
            out.append("\n")
        return out

    def action_cycle_window(self) -> None:
        self.window = (self.window + 1) % len(WINDOWS)
        self.reload()
