"""Customer text is data: markup, escapes, emoji, RTL and huge lines are shown literally."""

from __future__ import annotations

from rich.markup import escape

from console.app import ConsoleApp
from console.format import block, clean, literal
from console.screens.detail import ConversationDetailScreen
from tests.console.helpers import screen_text, settle
from tests.console.seed import RTL


def test_literal_keeps_markup_and_neutralises_escapes() -> None:
    text = literal("[bold]x[/] \x1b[31m \u202eevil", 80)
    assert text.plain == "[bold]x[/] ␛[31m �evil"
    assert not text.spans  # nothing was interpreted as style


def test_long_text_is_bounded() -> None:
    assert len(literal("A" * 10_000, 40).plain) == 40
    assert block("B" * 10_000, 100).plain.endswith("(9,900 more characters)")
    assert clean("ok\nnext") == "ok ⏎ next"
    assert escape("[b]")  # rich escaping is not what we rely on; Text objects are


async def test_hostile_contact_and_messages_render(app: ConsoleApp) -> None:
    """Markup-looking names and messages appear verbatim in the list and the thread."""
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.press("2")
        await settle(pilot)
        text = screen_text(app)
        assert "[bold]Eve[/]" in text
        assert RTL[:10] in text
        assert "[bold]not bold[/] [red]x[/red]" in text
        app.push_screen(ConversationDetailScreen(app.ctx, 1, 101))
        await settle(pilot)
        await pilot.press("home")
        await pilot.pause()
        text = screen_text(app)
        assert "[link=http://evil]click[/link] ␛[31mESC␛[0m" in text
        assert "🙂" in text
