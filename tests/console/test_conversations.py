"""Conversations: the list, its filters and paging."""

from __future__ import annotations

from textual.widgets import Input, Select

from console.app import ConsoleApp
from console.screens.conversations import ConversationsScreen
from console.screens.detail import ConversationDetailScreen
from console.widgets.live_table import LiveTable
from tests.console.helpers import screen_text, settle


def keys(app: ConsoleApp) -> list[str]:
    table = app.screen.query_one(LiveTable)
    return [row.value for row in table.rows]


async def test_lists_conversations_newest_first(app: ConsoleApp) -> None:
    """All columns are shown; the most recently active conversation comes first."""
    async with app.run_test(size=(160, 36)) as pilot:
        await pilot.press("2")  # conversations view
        await settle(pilot)
        assert isinstance(app.screen, ConversationsScreen)
        assert keys(app) == ["1/104", "1/103", "1/102", "1/101"]
        text = screen_text(app)
        for column in ("Channel", "Contact", "Inbox", "Crew", "Owner", "Status", "Age", "Last message"):
            assert column in text
        assert "rows 1–4 of 4" in text


async def test_filters_by_channel_crew_owner_and_text(app: ConsoleApp) -> None:
    """Each filter narrows the list; clearing them brings every row back."""
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("2")
        await settle(pilot)
        screen = app.screen
        screen.query_one("#filter-channel", Select).value = "whatsapp"
        await settle(pilot)
        assert keys(app) == ["1/101"]
        screen.query_one("#filter-channel", Select).clear()
        screen.query_one("#filter-crew", Select).value = "vendas"
        await settle(pilot)
        assert keys(app) == ["1/104", "1/101"]
        screen.query_one("#filter-crew", Select).clear()
        await settle(pilot)
        assert len(keys(app)) == 4
        await pilot.press("slash")  # focus the text filter
        await pilot.press(*"Bruno", "enter")
        await settle(pilot)
        assert keys(app) == ["1/102"]
        assert screen.query_one("#filter-text", Input).value == "Bruno"
        await pilot.press("escape")  # clear every filter
        await settle(pilot)
        screen.query_one("#filter-owner", Select).value = "paused"
        await settle(pilot)
        assert keys(app) == []
        assert "no conversations" in screen_text(app)


async def test_paging_moves_through_pages(app: ConsoleApp) -> None:
    """With a small page size, ] and [ move between pages."""
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("2")
        await settle(pilot)
        screen = app.screen
        from dataclasses import replace

        screen.filters = replace(screen.filters, page_size=3)
        screen.reload()
        await settle(pilot)
        assert keys(app) == ["1/104", "1/103", "1/102"]
        await pilot.press("right_square_bracket")
        await settle(pilot)
        assert keys(app) == ["1/101"]
        assert "page 2" in screen_text(app)
        await pilot.press("left_square_bracket")
        await settle(pilot)
        assert len(keys(app)) == 3


async def test_enter_opens_the_detail(app: ConsoleApp) -> None:
    """Enter on a row opens that conversation's thread; escape goes back."""
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("down", "down", "down", "enter")
        await settle(pilot)
        assert isinstance(app.screen, ConversationDetailScreen)
        assert app.screen.conversation_id == 101
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, ConversationsScreen)
