"""Provides OverviewScreen: is everything healthy, and how busy is the connector?"""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Label, Sparkline, Static

from console.format import age, literal, seconds, since, size
from console.screens.base import LiveScreen
from console.snapshots import OverviewData
from console.widgets.live_table import LiveTable
from state.vocabulary import JOURNAL_STALE_SECONDS, QUEUE_STALE_SECONDS

# The same limits as the sidecar's /health, from the vocabulary both share.
OLDEST_PENDING_ALERT = QUEUE_STALE_SECONDS
"""A job waiting longer than this means the worker is stuck or a back-end is down."""
UNAPPLIED_ALERT = JOURNAL_STALE_SECONDS
"""A webhook acknowledged this long ago and not applied yet: the sidecar is stuck or far behind."""
ERROR_RATE_ALERT = 0.2
_STATUS_STYLE = {"ok": "bold green", "degraded": "bold yellow", "down": "bold red",
                 "stale": "bold red", "unknown": "bold yellow"}


def _figure(label: str, value: str, alert: bool = False) -> tuple[Text, Text]:
    return Text(label, style="dim"), Text(value, style="bold red" if alert else "bold")


class OverviewScreen(LiveScreen):
    """Health of every component, traffic and latency charts, queue and error figures."""

    NAV = "overview"
    VIEW_TITLE = "Overview"
    HELP = ("Health of the sidecar and of every peer and crew back-end (with its circuit "
            "breaker), webhooks per minute and mean crew latency over the last hour, queue "
            "depth, oldest pending job, dead letters, crew error rate and signature "
            "rejections; the database's size (and free space inside it), the oldest row it "
            "keeps and the latest pruning (retention). Red means someone should look.")

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="overview-body"):
            yield Static(id="sidecar")
            with Horizontal(id="overview-top"):
                yield Static(id="figures")
                table = LiveTable(id="components")
                table.set_columns(("name", "Component"), ("status", "Status"), ("breaker", "Breaker"),
                                  ("recent", "Fail/req"), ("calls", "In flight"), ("latency", "Latency"),
                                  ("checked", "Checked"), ("detail", "Detail"))
                yield table
            yield Label("Webhooks per minute, last hour", id="webhooks-label")
            yield Sparkline([], id="webhooks")
            yield Label("Crew latency per minute (mean), last hour", id="latency-label")
            yield Sparkline([], id="latency")
            yield Static(id="warnings")

    def fetch(self, args: Any) -> OverviewData:
        return self.ctx.reader.overview()

    def status_text(self, data: OverviewData) -> str:
        return f"sidecar {data.sidecar}"

    def show(self, data: OverviewData) -> None:
        self._show_sidecar(data)
        self._show_figures(data)
        self._show_components(data)
        self.query_one("#webhooks", Sparkline).data = list(data.webhooks_per_minute)
        self.query_one("#latency", Sparkline).data = list(data.latency_per_minute)
        busiest = max(data.webhooks_per_minute, default=0)
        self.query_one("#webhooks-label", Label).update(
            f"Webhooks per minute, last hour: {data.webhooks_last_hour:,} total, peak {busiest:.0f}/min")
        slowest = max(data.latency_per_minute, default=0)
        self.query_one("#latency-label", Label).update(
            f"Crew latency per minute (mean), last hour: worst {seconds(slowest) if slowest else '-'}")
        warnings = Text()
        for warning in data.warnings:
            warnings.append("⚠ ", style="bold yellow")
            warnings.append_text(literal(warning, limit=200))
            warnings.append("\n")
        self.query_one("#warnings", Static).update(warnings)

    def _show_sidecar(self, data: OverviewData) -> None:
        text = Text("Sidecar ", style="bold")
        label = {"stale": "NOT RUNNING (health report is stale)",
                 "unknown": "NO HEALTH REPORT YET (is the sidecar running?)"}.get(data.sidecar,
                                                                            data.sidecar.upper())
        text.append(label, style=_STATUS_STYLE.get(data.sidecar, "bold"))
        if data.health_age is not None:
            text.append(f"  · health reported {age(data.health_age)} ago", style="dim")
        self.query_one("#sidecar", Static).update(text)

    def _show_figures(self, data: OverviewData) -> None:
        queue = data.queue
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column(no_wrap=True, justify="right")
        rate = data.error_rate
        old = queue.oldest_pending_age
        rows = [
            _figure("Queue depth", f"{queue.depth:,}"),
            _figure("  pending / in flight", f"{queue.pending:,} / {queue.in_flight:,}"),
            _figure("  waiting for crew", f"{queue.waiting:,}"),
            _figure("Oldest pending", age(old), old is not None and old > OLDEST_PENDING_ALERT),
            _figure("Dead letters", f"{queue.dead:,}", queue.dead > 0),
            _figure("Unapplied webhooks", f"{data.unapplied:,}" + (
                f" ({age(data.oldest_unapplied_age)} old)" if data.oldest_unapplied_age is not None else ""),
                data.oldest_unapplied_age is not None and data.oldest_unapplied_age > UNAPPLIED_ALERT),
            _figure("Crew error rate 1h",
                    "-" if rate is None else f"{rate:.0%} of {data.crew_requests:,}",
                    rate is not None and rate >= ERROR_RATE_ALERT),
            _figure("Signature rejections", f"{data.signature_rejections:,}", data.signature_rejections > 0),
            _figure("Malformed rejections", f"{data.malformed_rejections:,}", data.malformed_rejections > 0),
            _figure("Last webhook", f"{since(data.last_delivery_at, data.now)} ago"
                    if data.last_delivery_at else "never"),
            *self._storage_figures(data),
        ]
        for label, value in rows:
            grid.add_row(label, value)
        self.query_one("#figures", Static).update(grid)

    @staticmethod
    def _storage_figures(data: OverviewData) -> list[tuple[Text, Text]]:
        """The state file, the oldest row kept (retention's horizon) and the latest pruning."""
        storage, oldest, last = data.storage, data.oldest_row, data.last_prune
        # Red: a file made before auto-vacuum, which never shrinks until `compact` (see warnings).
        rows = [_figure("Database", "-" if storage is None else size(storage.file_bytes + storage.wal_bytes),
                        storage is not None and storage.needs_compact),
                # PostgreSQL does not measure it (autovacuum's business): "-" rather than a false 0.
                _figure("  free inside", "-" if storage is None or storage.auto_vacuum == "autovacuum"
                        else size(storage.reusable_bytes)),
                _figure("Oldest row" if oldest is None else f"Oldest row ({oldest[0]})",
                        "-" if oldest is None else since(oldest[1], data.now))]
        if last and isinstance(last.get("at"), int | float):
            pruned = sum(int(n) for n in (last.get("pruned") or {}).values())
            rows.append(_figure("Last pruning", f"{since(last['at'], data.now)} ago"))
            rows.append(_figure("  rows pruned", f"{pruned:,}"))
        else:
            rows.append(_figure("Last pruning", "never"))
        return rows

    def _show_components(self, data: OverviewData) -> None:
        rows = []
        for c in data.components:
            style = "bold red" if c.attention else ""
            status_style = "bold red" if c.attention else "green" if c.status == "ok" else "dim"
            rows.append((c.name, (
                literal(c.name, 28, style),
                literal(c.status, 10, status_style),
                literal(c.breaker or "-", 9, "bold red" if c.breaker in ("open", "half_open") else ""),
                literal(c.recent or "-", 8),
                literal(c.calls or "-", 12),
                literal("-" if c.latency_ms is None else f"{c.latency_ms:.0f}ms", 8),
                literal(since(c.checked_at, data.now), 6),
                literal(c.detail, 60, "red" if c.attention else "dim"),
            )))
        self.query_one("#components", LiveTable).sync(rows)
