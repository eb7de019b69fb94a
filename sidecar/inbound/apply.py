"""Provides intake's two transactions: journal a Chatwoot delivery, then apply it.

The webhook is answered once the raw delivery is journaled (one INSERT; dedup by delivery id
and by message). Applying it - conversation snapshot, message, ownership, queued work - runs
afterwards in the writer thread, in arrival order, all of one delivery or none of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sidecar.inbound import ownership
from sidecar.inbound.payload import (
    Conversation,
    Inbound,
    Message,
    event_label,
    message_type_label,
    normalize,
)
from state import ConversationRow, StorageUnavailable, Tx

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


def journal_delivery(tx: Tx, inbound: Inbound, *, body_text: str, delivery_id: str | None, now: float) -> bool:
    """The whole acknowledged transaction: one row, marked pending. False for a duplicate.

    Everything else (conversation state, ownership, queued work) is derived from this row
    afterwards by :func:`apply_pending`, so the 2xx costs one INSERT and a share of a
    group commit, and a crash between the two loses nothing: the row is applied on restart.
    """
    conv, msg = inbound.conversation, inbound.message
    return tx.insert_delivery(
        delivery_id=delivery_id, dedup_key=dedup_key(inbound), event=inbound.event or "unknown",
        outcome="pending", reason="", received_at=now,
        account_id=conv.account_id if conv else None,
        conversation_id=conv.conversation_id if conv else None,
        message_id=msg.id if msg else None, body=body_text,
    )


def first_look(inbound: Inbound, inbox_ids: tuple[int, ...]) -> tuple[str, str]:
    """The webhook's answer, from the payload alone: ``accepted`` when the message is one the
    bot may answer; whether it will (ownership, debounce) is decided when it is applied."""
    conv, msg, event = inbound.conversation, inbound.message, inbound.event
    if event != "message_created" or msg is None or conv is None:
        return "ignored", f"{event_label(event)}: stored for conversation state"
    if msg.message_type != "incoming":
        return "ignored", f"{message_type_label(msg.message_type)} message stored for context"
    why_not = _not_for_the_bot(conv, msg, inbox_ids) or _empty(msg)
    return ("ignored", why_not) if why_not else ("accepted", "stored; ownership and routing are decided next")


def _not_for_the_bot(conv: Conversation, msg: Message, inbox_ids: tuple[int, ...]) -> str | None:
    """Why an incoming customer message is not one to answer, whoever owns the conversation."""
    if msg.private:
        return "private message"
    if inbox_ids and conv.inbox_id not in inbox_ids:
        return f"inbox {conv.inbox_id} is not served"
    if msg.id is None:
        return "message has no id"
    return None


def _empty(msg: Message) -> str | None:
    return "empty message" if not msg.content.strip() and not msg.attachments else None


@dataclass(frozen=True, slots=True)
class Applied:
    """One journaled delivery after it was applied (or found unusable)."""

    delivery_id: str | None
    received_at: float
    result: IntakeResult
    error: str = ""
    """Set when applying failed; the delivery is kept with outcome ``failed``."""


def apply_pending(tx: Tx, settings: IntakeSettings, limit: int) -> list[Applied]:
    """Applies up to ``limit`` journaled deliveries in arrival order, each in its own
    savepoint: one that cannot be applied is marked ``failed`` (with its reason, and its
    body kept) instead of blocking every delivery behind it."""
    applied = []
    for row in tx.pending_deliveries(limit):
        try:
            with tx.savepoint():
                inbound = normalize(json.loads(row.body))
                result = _apply(tx, inbound, now=row.received_at, settings=settings)
                tx.set_delivery_outcome(row.row_id, result.outcome, result.reason)
            applied.append(Applied(row.delivery_id, row.received_at, result))
        except StorageUnavailable:
            raise  # storage trouble: the whole batch is retried later
        except Exception as exc:  # noqa: BLE001 - a bug on one delivery must not stall the rest
            reason = f"could not be applied: {type(exc).__name__}"
            tx.set_delivery_outcome(row.row_id, "failed", reason)
            applied.append(Applied(row.delivery_id, row.received_at, IntakeResult("failed", reason, ""),
                                   error=repr(exc)))
    return applied


def _apply(tx: Tx, inbound: Inbound, *, now: float, settings: IntakeSettings) -> IntakeResult:
    conv, msg, event = inbound.conversation, inbound.message, inbound.event
    if conv is None or conv.account_id is None or conv.conversation_id is None:
        reason = f"event {event_label(event)} stored, nothing to do" if event else "no event name"
        return IntakeResult("ignored", reason, event)
    acct, cid = conv.account_id, conv.conversation_id

    def result(outcome: str, reason: str, **kw: object) -> IntakeResult:
        return IntakeResult(outcome, reason, event, account_id=acct, conversation_id=cid, **kw)  # type: ignore[arg-type]

    stored = tx.get_conversation(acct, cid)
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
        return result("ignored", f"{event_label(event)}: conversation state stored", cancelled_jobs=cancelled)
    if msg.message_type != "incoming":
        return result("ignored", f"{role} message stored for context", cancelled_jobs=cancelled)
    why_not = _not_for_the_bot(conv, msg, settings.inbox_ids)
    if why_not:
        return result("ignored", why_not)
    current = tx.get_conversation(acct, cid)
    assert current is not None
    owns, why = ownership.bot_owns(current)
    if not owns:
        return result("ignored", why, cancelled_jobs=cancelled)
    why_not = _empty(msg)
    if why_not:
        return result("ignored", why_not)
    job = tx.enqueue_message(
        acct, cid, msg.id, now, settings.debounce_seconds, settings.debounce_max_seconds
    )
    return result("accepted", "queued for crew", job_id=job.id)
