"""Provides the rules of CONTRACT §4: who owns a conversation, and who wrote a message.

Pure functions over what the delivery says and what the store remembers; intake applies
their results inside the same transaction that records the delivery.
"""

from __future__ import annotations

from dataclasses import dataclass

from sidecar.inbound.payload import Conversation, Message
from state import ConversationRow
from state.vocabulary import BOT, HUMAN, PAUSED

__all__ = ["BOT", "HUMAN", "PAUSED", "OwnerChange", "bot_owns", "owner_allows", "change_for_conversation", "change_for_message",
           "message_role"]


@dataclass(frozen=True, slots=True)
class OwnerChange:
    owner: str
    reason: str


def message_role(message: Message, *, is_own: bool) -> str:
    """``customer``, ``bot``, ``agent``, ``note`` or ``template`` for the history."""
    if message.message_type == "incoming":
        return "customer"
    if message.message_type == "template":
        return "template"
    if message.private:
        return "note"
    if message.external_echo:
        # Typed in the WhatsApp/Facebook/Instagram app itself: a human agent wrote it.
        return "agent"
    if message.sender_kind in ("agent_bot", "captain_assistant", "none"):
        return "bot"
    if message.sender_kind == "user":
        return "bot" if is_own else "agent"
    return "bot"


def change_for_message(role: str, message: Message) -> OwnerChange | None:
    """A human agent's public message takes the conversation from the bot."""
    if role != "agent":
        return None
    if message.external_echo:
        return OwnerChange(HUMAN, "agent replied from the channel's own app")
    return OwnerChange(HUMAN, f"agent {message.sender_name or message.sender_id} replied")


def change_for_conversation(stored: ConversationRow | None, new: Conversation) -> OwnerChange | None:
    """Ownership transitions visible in the conversation snapshot itself."""
    if stored is None:
        if new.assignee_type == "User":
            return OwnerChange(HUMAN, f"assigned to agent {new.assignee_id}")
        if new.status == "snoozed":
            return OwnerChange(PAUSED, "conversation snoozed")
        return None
    if new.status == "resolved" and stored.owner != BOT:
        # Resolved: the next thing that can happen is the customer writing again, which
        # Chatwoot treats as a new turn (pending in a bot inbox), so it is the bot's again.
        # Chatwoot reopens the conversation before delivering that message, so waiting for
        # "incoming while resolved" would never fire.
        return OwnerChange(BOT, "conversation resolved; the bot answers the customer's next message")
    if stored.owner == BOT:
        if new.assignee_type == "User" and (
            new.assignee_id != stored.assignee_id or stored.assignee_type != "User"
        ):
            return OwnerChange(HUMAN, f"assigned to agent {new.assignee_id}")
        previous_status = new.changed.get("status", (None, None))[0]
        if new.status == "open" and previous_status == "pending":
            # Someone else opened a pending (bot) conversation: a human took it. Our own
            # hand-off has already moved the owner, so it never gets here.
            return OwnerChange(HUMAN, "conversation opened in Chatwoot")
        if new.status == "snoozed":
            return OwnerChange(PAUSED, "conversation snoozed")
    return None


def bot_owns(conversation: ConversationRow) -> tuple[bool, str]:
    return owner_allows(conversation.owner, conversation.owner_reason, conversation.status)


def owner_allows(owner: str, owner_reason: str, status: str) -> tuple[bool, str]:
    """Whether the bot may answer, and why not."""
    if owner != BOT:
        return False, f"bot does not own the conversation ({owner}: {owner_reason})"
    if status == "snoozed":
        return False, "conversation snoozed"
    return True, ""
