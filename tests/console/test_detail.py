"""Conversation detail: the thread interleaved with decisions, attempts and actions."""

from __future__ import annotations

from textual.widgets import Static

from console.app import ConsoleApp
from console.screens.detail import ConversationDetailScreen
from tests.console.helpers import screen_text, settle
from tests.console.seed import HOSTILE


async def open_detail(app: ConsoleApp, pilot, conversation_id: int) -> None:  # noqa: ANN001
    app.push_screen(ConversationDetailScreen(app.ctx, 1, conversation_id))
    await settle(pilot)


async def test_thread_interleaves_everything_by_time(app: ConsoleApp) -> None:
    """Messages, the routing decision, the crew attempt and the Chatwoot action in order."""
    async with app.run_test(size=(160, 60)) as pilot:
        await settle(pilot)
        await open_detail(app, pilot, 101)
        await pilot.press("home")
        await pilot.pause()
        plain = app.screen.query_one("#thread-text", Static).content.plain
        order = [plain.index(s) for s in (
            HOSTILE[:20], "routed to vendas · rules · confidence 0.90 · keyword [preço] matched",
            "crew vendas attempt 1 via http: answered in 1.2s (HTTP 200)",
            "reply in Chatwoot: done (message #9001)", "Olá! Como posso ajudar?",
            "private [note] for agents", "agent", "Oi, aqui é a Carla.")]
        assert order == sorted(order)
        assert "… (6,000 more characters)" in plain  # the 10,000-character message is bounded
        assert "Ana Souza" in screen_text(app)


async def test_dead_job_and_failed_attempt_show_in_thread(app: ConsoleApp) -> None:
    """A failed attempt shows its error; the dead job shows why it gave up."""
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await open_detail(app, pilot, 102)
        plain = app.screen.query_one("#thread-text", Static).content.plain
        assert "failed in 30.0s (HTTP 503) · HTTP 503 from crew" in plain
        assert "job 2 dead: crew suporte failed 6 times: HTTP 503" in plain
        assert "Preciso de ajuda com [meu pedido]" in plain
