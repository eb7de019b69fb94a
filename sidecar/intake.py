"""Provides the intake transaction: dedup, store, classify and queue one Chatwoot delivery.

Runs in the writer thread inside one BEGIN IMMEDIATE transaction, so a delivery is either
fully recorded (delivery, conversation, message, ownership, queued work) or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from sidecar import ownership
from sidecar.normalize import Conversation, Inbound, Message
from state import ConversationRow, Tx

# How long after posting a message its echo is still recognised as our own.
OWN_ECHO_WINDOW_SECONDS = 900.0
_PREVIEW_CHARS = 200


@dataclass(frozen=True, slots=True)
class IntakeSettings:
    """The slice of config intake needs (read once per delivery)."""

    inbox_ids: tuple[int, ...]
    debounce_seconds: float
    debounce_max_seconds: float
    self_user_ids: tuple[int, ...]
    """User ids that are the sidecar itself (configured, or learned from Chatwoot's answers)."""


@dataclass(frozen=True, slots=True)
class IntakeResult:
    outcome: str
    """``accepted`` (a crew will answer), ``ignored`` (stored only) or ``duplicate``."""
    reason: str
    event: str
    job_id: int | None = None
    account_id: int | None = None
    conversation_id: int | None = None
    cancelled_jobs: int = 0


def dedup_key(inbound: Inbound) -> str | None:
    """The same message delivered under another delivery id must be handled once."""
    conv, msg = inbound.conversation, inbound.message
    if inbound.event == "message_created" and msg is not None and msg.id is not None:
        account = conv.account_id if conv is not None else None
        return f"message_created:{account}:{msg.id}"
    return None


def _snapshot_fields(conv: Conversation) -> dict[str, object]:
    return {
        "inbox_id": conv.inbox_id,
        "channel": conv.channel,
        "channel_type": conv.channel_type,
        "contact_id": conv.contact.get("id"),
        "contact_name": conv.contact.get("name") or "",
        "contact_json": conv.contact,
        "status": conv.status,
        "assignee_type": conv.assignee_type,
        "assignee_id": conv.assignee_id,
        "team_id": conv.team_id,
        "labels": list(conv.labels),
        "can_reply": int(conv.can_reply),
        "last_activity_at": conv.last_activity_at,
    }


def _is_stale(stored: ConversationRow | None, conv: Conversation, tx: Tx) -> bool:
    """Chatwoot does not order deliveries: an older snapshot must not undo a newer one."""
    if stored is None or conv.last_activity_at is None:
        return False
    row = tx.conn.execute(
        "SELECT last_activity_at FROM conversations WHERE account_id=? AND conversation_id=?",
        (stored.account_id, stored.conversation_id),
    ).fetchone()
    return row is not None and row[0] is not None and conv.last_activity_at < row[0]


def _is_own_message(tx: Tx, conv: Conversation, msg: Message, settings: IntakeSettings, now: float) -> bool:
    if msg.message_type != "outgoing" or msg.sender_kind != "user":
        return False
    if msg.sender_id is not None and msg.sender_id in settings.self_user_ids:
        return True
    # The echo can arrive before Chatwoot has answered our create call, so we also match
    # the content against what we are posting (or posted) in this conversation.
    assert conv.account_id is not None and conv.conversation_id is not None
    return tx.find_own_action(
        conv.account_id, conv.conversation_id, msg.content_hash, now - OWN_ECHO_WINDOW_SECONDS
    ) is not None


def record_delivery(
    tx: Tx,
    inbound: Inbound,
    *,
    body_text: str,
    delivery_id: str | None,
    now: float,
    settings: IntakeSettings,
) -> IntakeResult:
    conv, msg, event = inbound.conversation, inbound.message, inbound.event
    account_id = conv.account_id if conv else None
    conversation_id = conv.conversation_id if conv else None
    message_id = msg.id if msg else None

    if not tx.insert_delivery(
        delivery_id=delivery_id, dedup_key=dedup_key(inbound), event=event or "unknown",
        outcome="ignored", reason="", received_at=now, account_id=account_id,
        conversation_id=conversation_id, message_id=message_id, body=body_text,
    ):
        return IntakeResult("duplicate", "already received", event, account_id=account_id,
                            conversation_id=conversation_id)

    result = _apply(tx, inbound, now=now, settings=settings)
    tx.set_delivery_outcome(delivery_id, dedup_key(inbound), result.outcome, result.reason)
    return result


def _apply(tx: Tx, inbound: Inbound, *, now: float, settings: IntakeSettings) -> IntakeResult:
    conv, msg, event = inbound.conversation, inbound.message, inbound.event
    if conv is None or conv.account_id is None or conv.conversation_id is None:
        reason = f"event {event or '(none)'} stored, nothing to do" if event else "no event name"
        return IntakeResult("ignored", reason, event)
    acct, cid = conv.account_id, conv.conversation_id

    def result(outcome: str, reason: str, **kw: object) -> IntakeResult:
        return IntakeResult(outcome, reason, event, account_id=acct, conversation_id=cid, **kw)  # type: ignore[arg-type]

    stored = tx.get_conversation(acct, cid)
    served = not settings.inbox_ids or conv.inbox_id in settings.inbox_ids
    fields = {} if _is_stale(stored, conv, tx) else _snapshot_fields(conv)
    if conv.inbox_name:
        fields["inbox_name"] = conv.inbox_name
    tx.upsert_conversation(acct, cid, now, **fields)

    changes = []
    if fields:
        change = ownership.change_for_conversation(stored, conv)
        if change:
            changes.append(change)

    role = None
    if msg is not None and event == "message_created":
        role = ownership.message_role(msg, is_own=_is_own_message(tx, conv, msg, settings, now))
        change = ownership.change_for_message(role, msg)
        if change:
            changes.append(change)
        if msg.message_type != "activity":
            tx.insert_message(
                account_id=acct, conversation_id=cid, message_id=msg.id, role=role,
                sender_type=msg.sender_kind, sender_id=msg.sender_id, content=msg.content,
                content_type=msg.content_type, attachments=[a.as_dict() for a in msg.attachments],
                private=msg.private, content_hash=msg.content_hash,
                created_at=msg.created_at or now,
            )
            preview = msg.content or (f"[{msg.attachments[0].file_type}]" if msg.attachments else "")
            tx.upsert_conversation(
                acct, cid, now, last_message_at=now,
                last_message_preview=preview[:_PREVIEW_CHARS], last_message_role=role,
            )

    cancelled = 0
    for change in changes:
        tx.set_owner(acct, cid, change.owner, change.reason, now)
        if change.owner != ownership.BOT:
            cancelled += tx.cancel_pending_jobs(acct, cid, change.reason, now)

    if event != "message_created" or msg is None:
        return result("ignored", f"{event or 'event'}: conversation state stored", cancelled_jobs=cancelled)
    if msg.message_type != "incoming":
        return result("ignored", f"{role} message stored for context", cancelled_jobs=cancelled)
    if msg.private:
        return result("ignored", "private message")
    if not served:
        return result("ignored", f"inbox {conv.inbox_id} is not served")
    if msg.id is None:
        return result("ignored", "message has no id")
    current = tx.get_conversation(acct, cid)
    assert current is not None
    owns, why = ownership.bot_owns(current)
    if not owns:
        return result("ignored", why, cancelled_jobs=cancelled)
    if not msg.content.strip() and not msg.attachments:
        return result("ignored", "empty message")
    job = tx.enqueue_message(
        acct, cid, msg.id, now, settings.debounce_seconds, settings.debounce_max_seconds
    )
    return result("accepted", "queued for crew", job_id=job.id)
