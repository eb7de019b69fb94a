"""Provides applying one journaled delivery: conversation snapshot, message, ownership, queued work.

The webhook is answered once the raw delivery is journaled (one INSERT; dedup by delivery id and
by message). Applying it runs afterwards (sidecar.inbound.journal_applier), in arrival order, all
of one delivery or none of it. The webhook's own answer (``first_look``) comes from the payload
alone and agrees with what applying decides about the message itself; ownership and debounce
are decided here.
"""

from __future__ import annotations

from dataclasses import dataclass

from sidecar.inbound import ownership
from sidecar.inbound.payload import (
    Conversation,
    Inbound,
    Message,
    Peek,
    event_label,
    message_type_label,
    normalize,
    parse_json,
)
from sidecar.ops.outcomes import record
from state import ConversationRow, PendingDelivery, StorageUnavailable, Tx
from state.vocabulary import BOT, PASSIVE_MODES

OWN_ECHO_WINDOW_SECONDS = 900.0
"""How long after posting a message its echo is still recognised as our own."""
_PREVIEW_CHARS = 200


@dataclass(frozen=True, slots=True)
class ApplySettings:
    """The slice of config applying needs (read once per batch)."""

    inbox_ids: tuple[int, ...]
    debounce_seconds: float
    debounce_max_seconds: float
    self_user_ids: tuple[int, ...]
    """User ids that are the sidecar itself (configured, or learned from Chatwoot's answers)."""
    passive_everywhere: bool = False
    """Some conversations may be in draft or shadow mode whatever their inbox (``routing.mode``, or
    a rule's mode): their customer messages are queued even when a human owns the conversation."""
    passive_inboxes: frozenset[int] = frozenset()
    """Inboxes in draft or shadow mode."""

    def may_be_passive(self, inbox_id: int | None, stored_mode: str) -> bool:
        return self.passive_everywhere or stored_mode in PASSIVE_MODES or inbox_id in self.passive_inboxes


@dataclass(frozen=True, slots=True)
class Outcome:
    outcome: str
    """``accepted`` (a crew will answer), ``ignored`` (stored only) or ``failed``."""
    reason: str
    event: str
    job_id: int | None = None
    account_id: int | None = None
    conversation_id: int | None = None
    cancelled_jobs: int = 0


@dataclass(frozen=True, slots=True)
class Applied:
    """One journaled delivery after it was applied (or found unusable)."""

    delivery_id: str | None
    received_at: float
    result: Outcome
    error: str = ""
    """Set when applying failed; the delivery is kept with outcome ``failed``."""


def journal(tx: Tx, view: Peek, *, body_text: str, delivery_id: str | None, now: float) -> bool:
    """The whole acknowledged transaction: one row, marked pending. False for a duplicate.

    Everything else is derived from this row afterwards by :func:`apply_pending`, so the 2xx
    costs one INSERT and a share of a group commit, and a crash between the two loses nothing.
    """
    return tx.journal.insert(
        delivery_id=delivery_id, dedup_key=view.dedup_key, event=view.event or "unknown", received_at=now,
        account_id=view.account_id, conversation_id=view.conversation_id, message_id=view.message_id,
        body=body_text)


def first_look(view: Peek, inbox_ids: tuple[int, ...]) -> tuple[str, str]:
    """The webhook's answer, from the payload alone: ``accepted`` when the message is one the bot
    may answer; whether it will (ownership, debounce) is decided when it is applied."""
    if view.event != "message_created" or view.conversation_id is None:
        return "ignored", f"{event_label(view.event)}: stored for conversation state"
    if view.message_type != "incoming":
        return "ignored", f"{message_type_label(view.message_type)} message stored for context"
    why_not = not_for_the_bot(view.private, view.inbox_id, view.message_id, inbox_ids)
    if why_not is None and view.empty:
        why_not = "empty message"
    return ("ignored", why_not) if why_not else ("accepted", "stored; ownership and routing are decided next")


def not_for_the_bot(private: bool, inbox_id: int | None, message_id: int | None,
                    inbox_ids: tuple[int, ...]) -> str | None:
    """Why an incoming customer message is not one to answer, whoever owns the conversation."""
    if private:
        return "private message"
    if inbox_ids and inbox_id not in inbox_ids:
        return f"inbox {inbox_id} is not served"
    if message_id is None:
        return "message has no id"
    return None


def apply_pending(tx: Tx, settings: ApplySettings, limit: int) -> list[Applied]:
    """Applies up to ``limit`` journaled deliveries in arrival order. A delivery that cannot be
    applied is marked ``failed`` (with its reason, and its body kept) instead of blocking every
    delivery behind it.

    Optimistic: the batch runs in one savepoint; only when a delivery fails is the batch undone
    and applied again one savepoint per delivery (a savepoint costs two statements)."""
    tx.journal.take_applier_turn()  # one applier at a time, across processes and replicas
    rows = tx.journal.pending(limit)
    if not rows:
        return []
    try:
        with tx.savepoint():
            applied = [Applied(row.delivery_id, row.received_at, _apply_row(tx, row.body, row.received_at, settings))
                       for row in rows]
    except StorageUnavailable:
        raise  # storage trouble: the whole batch is retried later
    except Exception:  # noqa: BLE001 - find the delivery at fault, below
        applied = [_apply_alone(tx, row, settings) for row in rows]
    tx.journal.set_outcomes([(a.result.outcome, a.result.reason, row.row_id) for a, row in zip(applied, rows,
                                                                                              strict=True)])
    return applied


def _apply_row(tx: Tx, body: str, received_at: float, settings: ApplySettings) -> Outcome:
    return _apply(tx, normalize(parse_json(body)), now=received_at, settings=settings)


def _apply_alone(tx: Tx, row: PendingDelivery, settings: ApplySettings) -> Applied:
    try:
        with tx.savepoint():
            return Applied(row.delivery_id, row.received_at, _apply_row(tx, row.body, row.received_at, settings))
    except StorageUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - a bug on one delivery must not stall the rest
        result = Outcome("failed", f"could not be applied: {type(exc).__name__}", "")
        return Applied(row.delivery_id, row.received_at, result, error=repr(exc))


def _snapshot_fields(conv: Conversation) -> dict[str, object]:
    return {
        "inbox_id": conv.inbox_id, "channel": conv.channel, "channel_type": conv.channel_type,
        "contact_id": conv.contact.get("id"), "contact_name": conv.contact.get("name") or "",
        "contact_json": conv.contact, "status": conv.status, "assignee_type": conv.assignee_type,
        "assignee_id": conv.assignee_id, "team_id": conv.team_id, "labels": list(conv.labels),
        "can_reply": int(conv.can_reply), "last_activity_at": conv.last_activity_at,
        **({"remote_updated_at": conv.updated_at} if conv.updated_at is not None else {}),
    }


def _is_stale(stored: ConversationRow | None, stored_activity: float | None, conv: Conversation) -> bool:
    """Chatwoot does not order deliveries: an older snapshot must not undo a newer one. Last
    activity first; with the same activity (a resolve, then the reopen a moment later), Chatwoot's
    updated_at."""
    if stored is None or conv.last_activity_at is None or stored_activity is None:
        return False
    if conv.last_activity_at != stored_activity:
        return conv.last_activity_at < stored_activity
    return (conv.updated_at is not None and stored.remote_updated_at is not None
            and conv.updated_at < stored.remote_updated_at)


def _is_own_message(tx: Tx, conv: Conversation, msg: Message, settings: ApplySettings, now: float) -> bool:
    if msg.message_type != "outgoing" or msg.sender_kind != "user":
        return False
    if msg.sender_id is not None and msg.sender_id in settings.self_user_ids:
        return True
    # The echo can arrive before Chatwoot has answered our create call, so we also match the
    # content against what we are posting (or posted) in this conversation.
    assert conv.account_id is not None and conv.conversation_id is not None
    return tx.effects.find_own(conv.account_id, conv.conversation_id, msg.content_hash, now - OWN_ECHO_WINDOW_SECONDS)


def _status_outcomes(tx: Tx, stored: ConversationRow, conv: Conversation, now: float) -> None:
    """Analytics: a conversation the bot resolved without a human, and one reopened after that."""
    where = {"account_id": stored.account_id, "conversation_id": stored.conversation_id, "crew": stored.crew or "",
             "rule": stored.rule, "now": now}
    if conv.status == "resolved" and stored.status != "resolved":
        if stored.owner == BOT and stored.crew and stored.mode == "auto":
            record(tx, "resolved_by_bot", **where)
    elif stored.status == "resolved" and conv.status in ("open", "pending") and tx.outcomes.last_of(
            stored.account_id, stored.conversation_id, ("resolved_by_bot", "reopened")) == "resolved_by_bot":
        record(tx, "reopened", **where)


def _csat(tx: Tx, stored: ConversationRow, message_id: int | None, rating: int, now: float) -> None:
    """A CSAT answer, once per survey message (Chatwoot sends message_updated more than once)."""
    detail = f"message {message_id}"
    if tx.outcomes.seen(stored.account_id, stored.conversation_id, "csat", detail):
        return
    record(tx, "csat", account_id=stored.account_id, conversation_id=stored.conversation_id,
           crew=stored.crew or "", rule=stored.rule, now=now, value=float(rating), detail=detail)


def _apply(tx: Tx, inbound: Inbound, *, now: float, settings: ApplySettings) -> Outcome:
    conv, msg, event = inbound.conversation, inbound.message, inbound.event
    if conv is None or conv.account_id is None or conv.conversation_id is None:
        reason = f"event {event_label(event)} stored, nothing to do" if event else "no event name"
        return Outcome("ignored", reason, event)
    acct, cid = conv.account_id, conv.conversation_id

    def result(outcome: str, reason: str, **kw: object) -> Outcome:
        return Outcome(outcome, reason, event, account_id=acct, conversation_id=cid, **kw)  # type: ignore[arg-type]

    stored = tx.conversations.get(acct, cid)
    stale = _is_stale(stored, stored.last_activity_at if stored else None, conv) if stored else False
    fields = {} if stale else _snapshot_fields(conv)
    if conv.inbox_name:
        fields["inbox_name"] = conv.inbox_name

    changes = []
    if not stale:
        change = ownership.change_for_conversation(stored, conv)
        if change:
            changes.append(change)
        if stored is not None:
            _status_outcomes(tx, stored, conv, now)

    role = None
    if msg is not None and event == "message_created":
        role = ownership.message_role(msg, is_own=_is_own_message(tx, conv, msg, settings, now))
        change = ownership.change_for_message(role, msg)
        if change:
            changes.append(change)
        if role == "agent":
            tx.handoffs.human_replied(acct, cid, now)  # the reminder watchdog has nothing to do
        if msg.message_type != "activity":
            tx.messages.insert(
                account_id=acct, conversation_id=cid, message_id=msg.id, role=role, sender_type=msg.sender_kind,
                sender_id=msg.sender_id, content=msg.content, content_type=msg.content_type,
                attachments=[a.as_dict() for a in msg.attachments], private=msg.private,
                content_hash=msg.content_hash, created_at=msg.created_at or now)
            preview = msg.content or (f"[{msg.attachments[0].file_type}]" if msg.attachments else "")
            fields.update(last_message_at=now, last_message_preview=preview[:_PREVIEW_CHARS], last_message_role=role)
    if msg is not None and msg.csat_rating is not None and stored is not None:
        _csat(tx, stored, msg.id, msg.csat_rating, now)
    tx.conversations.upsert(acct, cid, now, **fields)

    owner = stored.owner if stored else BOT
    owner_reason = stored.owner_reason if stored else ""
    cancelled = 0
    for change in changes:
        tx.conversations.set_owner(acct, cid, change.owner, change.reason, now)
        owner, owner_reason = change.owner, change.reason
        if change.owner != BOT:
            cancelled += tx.jobs.cancel_pending(acct, cid, change.reason, now)

    if event != "message_created" or msg is None:
        return result("ignored", f"{event_label(event)}: conversation state stored", cancelled_jobs=cancelled)
    if msg.message_type != "incoming":
        return result("ignored", f"{role} message stored for context", cancelled_jobs=cancelled)
    why_not = not_for_the_bot(msg.private, conv.inbox_id, msg.id, settings.inbox_ids)
    if why_not:
        return result("ignored", why_not)
    status = conv.status if not stale else (stored.status if stored else conv.status)
    owns, why = ownership.owner_allows(owner, owner_reason, status)
    if not owns and not (status != "snoozed" and settings.may_be_passive(conv.inbox_id, stored.mode if stored
                                                                          else "auto")):
        return result("ignored", why, cancelled_jobs=cancelled)
    if not msg.content.strip() and not msg.attachments:
        return result("ignored", "empty message")
    assert msg.id is not None
    job_id = tx.jobs.enqueue(acct, cid, msg.id, now, settings.debounce_seconds, settings.debounce_max_seconds,
                             new_conversation=stored is None)
    return result("accepted", "queued for crew", job_id=job_id)
