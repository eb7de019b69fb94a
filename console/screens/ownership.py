"""Provides the bot-ownership toggle shared by the conversations list and the detail view."""

from __future__ import annotations

from functools import partial

from rich.text import Text
from textual.screen import Screen

from console.actions import OperatorError
from console.context import ConsoleContext
from console.format import clean
from console.messages import OperatorDone
from console.screens.confirm_modal import ConfirmModal
from state import ConversationRow


def ask_toggle_owner(screen: Screen[None], ctx: ConsoleContext, conv: ConversationRow) -> None:
    """Asks the operator, then pauses the bot (owner bot) or gives the conversation back."""
    give_back = conv.owner != "bot"
    verb = "Give back to the bot" if give_back else "Pause the bot"
    question = Text()
    question.append(f"{verb} on conversation #{conv.conversation_id}")
    question.append(f" ({clean(conv.contact_name) or 'unknown contact'})", style="bold")
    question.append("?\n")
    question.append("The bot will answer new customer messages again." if give_back else
                    "The bot stops answering; pending bursts are cancelled.", style="dim")

    def done(yes: bool | None) -> None:
        if yes:
            # A thread: the write may wait up to the busy timeout for the sidecar's lock.
            screen.run_worker(partial(_set_owner, screen, ctx, conv.account_id, conv.conversation_id,
                                      give_back), thread=True, group="operator", exit_on_error=False)

    screen.app.push_screen(ConfirmModal(verb, question), done)


def _set_owner(screen: Screen[None], ctx: ConsoleContext, account_id: int, conversation_id: int,
               bot: bool) -> None:
    try:
        changed = ctx.operator.set_bot(account_id, conversation_id, bot=bot)
    except OperatorError as exc:
        screen.post_message(OperatorDone(False, str(exc)))
        return
    what = "given back to the bot" if bot else "paused (a human owns it)"
    screen.post_message(OperatorDone(changed, f"Conversation #{conversation_id} {what}" if changed
                                     else f"Conversation #{conversation_id} no longer exists"))
