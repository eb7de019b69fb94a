"""Overview: component health, breakers, queue and intake figures, charts."""

from __future__ import annotations

import re

from console.app import ConsoleApp
from console.screens.overview import OverviewScreen
from console.widgets.live_table import LiveTable
from tests.console.helpers import screen_text, settle


async def test_overview_shows_every_component_and_figure(app: ConsoleApp) -> None:
    """Each peer, the queue and each crew back-end (with its breaker) get a row."""
    async with app.run_test(size=(140, 36)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, OverviewScreen)
        table = app.screen.query_one("#components", LiveTable)
        assert table.row_count == 7
        text = screen_text(app)
        assert "Sidecar DEGRADED" in text
        assert "suporte (mcp)" in text and "open" in text and "9/10" in text
        assert "8/8 +5" in text and "3/4096" in text  # crew calls in flight / limit (+ waiting)
        assert "connection refused" in text
        assert re.search(r"Dead letters +1\b", text)
        assert re.search(r"Signature rejections +2\b", text)
        assert "50% of 2" in text  # one failed crew attempt out of two
        assert "30 total" in text  # webhooks in the last hour
        assert re.search(r"Unapplied webhooks +2 \(10m old\)", text)
        assert "circuit breaker open" in text


async def test_overview_marks_attention_in_red(app: ConsoleApp) -> None:
    """Down components and an open breaker are styled red."""
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        data = app.screen.data
        red = {c.name for c in data.components if c.attention}
        assert red == {"mcp_crew", "suporte (mcp)"}
        assert data.queue.dead == 1
        assert data.unapplied == 2 and data.oldest_unapplied_age > 60  # shown in red


async def test_stale_health_says_sidecar_not_running(db_path: str) -> None:
    """A health report older than 3 probe intervals means the sidecar is not running."""
    from tests.console.conftest import build_app
    from tests.console.seed import NOW

    app = build_app(db_path)
    app.ctx.reader.clock = lambda: NOW + 3600
    app.ctx.clock = app.ctx.reader.clock
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        assert "NOT RUNNING" in screen_text(app)


async def test_overview_shows_the_database_size_oldest_row_and_last_pruning(app: ConsoleApp) -> None:
    """Retention's figures: the file's size and free space, the oldest row kept, the latest pass."""
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        data = app.screen.data
        assert data.storage is not None and data.storage.file_bytes > 0
        assert data.oldest_row is not None and data.oldest_row[0] in ("deliveries", "messages", "jobs", "audit")
        text = screen_text(app)
        assert re.search(r"Database +\d+(\.\d)? (KiB|MiB)", text)
        # PostgreSQL does not measure the free space inside (autovacuum's business): "-", not 0.
        assert re.search(r"free inside +\d" if data.storage.auto_vacuum != "autovacuum" else r"free inside +-", text)
        assert re.search(rf"Oldest row \({data.oldest_row[0]}\) +\d+[smhd]\b", text)
        assert re.search(r"Last pruning +2m ago", text)
        assert re.search(r"rows pruned +42\b", text)
