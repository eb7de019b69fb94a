"""Every screen renders at 80x24 without errors and keeps its keys visible."""

from __future__ import annotations

import pytest

from console.app import ConsoleApp
from console.screens.confirm_modal import ConfirmModal
from console.screens.help_modal import HelpModal
from tests.console.helpers import screen_text, settle


@pytest.mark.parametrize("keys, expect", [
    (["1"], "Sidecar"),
    (["2"], "Channel"),
    (["2", "enter"], "owner bot"),
    (["3"], "Per crew"),
    (["4"], "Reason"),
    (["5"], "INVALID"),
    (["5", "a"], "routing.default_crew"),
    (["4", "question_mark"], "Retry"),
    (["2", "b"], "Pause the bot"),
])
async def test_each_screen_at_80x24(app: ConsoleApp, keys: list[str], expect: str) -> None:
    async with app.run_test(size=(80, 24)) as pilot:
        for key in keys:
            await pilot.press(key)
            await settle(pilot)
        text = screen_text(app)
        assert expect in text
        lines = text.splitlines()
        assert len(lines) == 24 and all(len(line) <= 80 for line in lines)
        if not isinstance(app.screen, ConfirmModal | HelpModal):
            assert "? Help" in lines[-1]  # the footer with the keys is always there


async def test_help_on_every_view(app: ConsoleApp) -> None:
    """? opens a help screen on each view, escape closes it."""
    async with app.run_test(size=(80, 24)) as pilot:
        for key in "12345":
            await pilot.press(key)
            await settle(pilot)
            await pilot.press("question_mark")
            await pilot.pause()
            assert isinstance(app.screen, HelpModal)
            await pilot.press("escape")
            await pilot.pause()
            assert not isinstance(app.screen, HelpModal)


async def test_nav_bar_click_switches_view(app: ConsoleApp) -> None:
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.click("NavTab", offset=(25, 0))  # "2 Conversations" tab area
        await settle(pilot)
        assert app.current_mode == "conversations"
