"""The console's only writes: dead-letter retry/discard and the bot-ownership toggle."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from console.app import ConsoleApp
from console.screens.confirm_modal import ConfirmModal
from console.screens.conversations import ConversationsScreen
from console.screens.dead_letters import DeadLettersScreen
from console.screens.detail import ConversationDetailScreen
from state import Tx, open_database
from tests.console.conftest import ACTOR
from tests.console.helpers import screen_text, settle, wait_for_text


def _read(path: str, fn: Callable[[Tx], Any]) -> Any:
    db = open_database(path, readonly=True)
    try:
        return db.read(fn)
    finally:
        db.close()


def job_state(path: str, job_id: int) -> str:
    return _read(path, lambda tx: tx.jobs.get(job_id).state)


def last_action(path: str) -> tuple[str, str, str]:
    action = _read(path, lambda tx: tx.audit.operator_actions(limit=1)[0])
    return action.actor, action.action, action.target


def owner(path: str, conversation_id: int) -> str:
    conv = _read(path, lambda tx: tx.conversations.get(1, conversation_id))
    assert conv is not None
    return conv.owner


async def test_dead_letter_shows_payload_and_reason(app: ConsoleApp) -> None:
    """The selected dead letter's reason and carried messages are shown."""
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        assert isinstance(app.screen, DeadLettersScreen)
        text = screen_text(app)
        assert "Reason: crew suporte failed 6 times: HTTP 503" in text
        assert "customer: Preciso de ajuda com [meu pedido]" in text


async def test_retry_dead_letter_after_confirming(app: ConsoleApp, db_path: str) -> None:
    """r asks first; yes puts the job back as pending and records the actor."""
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("y")
        await settle(pilot)
        assert job_state(db_path, 2) == "pending"
        assert last_action(db_path) == (ACTOR, "retry_dead_letter", "job:2")
        # the list refreshed
        assert "1 dead letters" not in await wait_for_text(pilot, "1 dead letters", present=False)
        assert app.screen.query_one("#dead").row_count == 0


async def test_discard_dead_letter_can_be_cancelled_then_done(app: ConsoleApp, db_path: str) -> None:
    """x then n changes nothing; x then the Yes button discards the job."""
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("x", "n")
        await settle(pilot)
        assert job_state(db_path, 2) == "dead"
        await pilot.press("x")
        await pilot.pause()
        await pilot.click("#yes")  # the mouse works too
        await settle(pilot)
        assert job_state(db_path, 2) == "discarded"
        assert last_action(db_path) == (ACTOR, "discard_dead_letter", "job:2")


async def test_pause_from_list_and_give_back_from_detail(app: ConsoleApp, db_path: str) -> None:
    """b on a bot-owned conversation pauses it; b in its detail gives it back."""
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("2")
        await settle(pilot)
        assert isinstance(app.screen, ConversationsScreen)
        await pilot.press("down", "down", "down")  # conversation 101
        await pilot.press("b", "y")
        await settle(pilot)
        assert owner(db_path, 101) == "paused"
        assert last_action(db_path) == (ACTOR, "pause", "conversation:1/101")
        assert "paused" in await wait_for_text(pilot, "paused")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ConversationDetailScreen)
        assert "owner paused" in await wait_for_text(pilot, "owner paused")
        await pilot.press("b", "y")
        await settle(pilot)
        assert owner(db_path, 101) == "bot"
        assert last_action(db_path) == (ACTOR, "give_back", "conversation:1/101")
        assert "owner bot" in await wait_for_text(pilot, "owner bot")
