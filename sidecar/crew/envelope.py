"""Provides the crew request envelope (CONTRACT §5, schema ``chatwoot-crew/v1``)."""

from __future__ import annotations

import time
from typing import Any

from state import ConversationRow, Job, MessageRow

SCHEMA = "chatwoot-crew/v1"


def _message(m: MessageRow) -> dict[str, Any]:
    return {
        "id": m.message_id,
        "created_at": m.created_at,
        "content": m.content,
        "content_type": m.content_type,
        "attachments": list(m.attachments),
    }


def _turn(m: MessageRow) -> dict[str, Any]:
    return {"role": m.role, "content": m.content, "at": m.created_at, "message_id": m.message_id}


def build_envelope(
    *,
    job: Job,
    conversation: ConversationRow,
    burst: list[MessageRow],
    history: list[MessageRow],
    crew: str,
    route: dict[str, Any],
    callback_url: str,
) -> dict[str, Any]:
    """Everything a crew needs to answer; never any credential."""
    return {
        "schema": SCHEMA,
        "request_id": job.request_id,
        "crew": crew,
        "sent_at": time.time(),
        "routing": route,
        "chatwoot": {
            "account_id": conversation.account_id,
            "inbox_id": conversation.inbox_id,
            "inbox_name": conversation.inbox_name,
            "conversation_id": conversation.conversation_id,
            "channel": conversation.channel,
            "channel_type": conversation.channel_type,
            "status": conversation.status,
            "labels": list(conversation.labels),
            "can_reply": conversation.can_reply,
        },
        "contact": conversation.contact,
        "messages": [_message(m) for m in burst],
        "history": [_turn(m) for m in history],
        "callback_url": callback_url,
    }


def burst_text(burst: list[MessageRow]) -> str:
    """The burst as one text (for routing and for single-text dialects)."""
    return "\n".join(m.content for m in burst if m.content)
