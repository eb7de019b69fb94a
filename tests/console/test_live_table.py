"""LiveTable: a refreshed value that outgrows its column widens the column at once."""

from __future__ import annotations

from rich.text import Text
from textual.app import App, ComposeResult

from console.widgets.live_table import LiveTable
from tests.console.helpers import screen_text


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        table = LiveTable(id="t")
        table.set_columns(("name", "Name"), ("owner", "Own"))
        yield table


def rows(*owners: str) -> list[tuple[str, tuple[Text, Text]]]:
    return [(f"1/{100 + n}", (Text(f"c{n}"), Text(owner))) for n, owner in enumerate(owners)]


async def test_a_grown_cell_is_shown_whole_even_if_repainted_before_idle() -> None:
    """DataTable measures widths on its next idle and caches cells without their width; a
    repaint in between once left "paused" cut to the old width until the next change."""
    app = TableApp()
    async with app.run_test(size=(60, 8)) as pilot:
        table = app.query_one(LiveTable)
        table.sync(rows("bot"))
        await pilot.pause()
        assert table.sync(rows("paused"))  # the same row: one cell updated in place
        screen_text(app)  # a repaint lands before the table's next idle
        await pilot.pause()
        assert "paused" in screen_text(app)
        assert table.sync(rows("paused")) is False  # the same snapshot: nothing to do


async def test_rows_that_arrive_wider_are_shown_whole() -> None:
    """The rebuild path (rows came and went) settles widths before the next repaint too."""
    app = TableApp()
    async with app.run_test(size=(60, 8)) as pilot:
        table = app.query_one(LiveTable)
        table.sync(rows("bot"))
        await pilot.pause()
        assert table.sync(rows("bot", "human"))
        screen_text(app)
        await pilot.pause()
        lines = screen_text(app).splitlines()
        assert any(line.split() == ["c1", "human"] for line in lines)
