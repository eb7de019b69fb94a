"""Provides the frozen records that the state package returns to its callers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from state.sql import loads_or as _loads


@dataclass(frozen=True, slots=True)
class Delivery:
    """One accepted Chatwoot delivery."""

    id: int
    delivery_id: str | None
    event: str
    outcome: str
    reason: str
    received_at: float
    account_id: int | None
    conversation_id: int | None
    message_id: int | None


@dataclass(frozen=True, slots=True)
class PendingDelivery:
    """A delivery acknowledged to Chatwoot but not yet applied to conversation state."""

    row_id: int
    delivery_id: str | None
    received_at: float
    body: str


@dataclass(frozen=True, slots=True)
class ConversationRow:
    """The stored view of one Chatwoot conversation."""

    account_id: int
    conversation_id: int
    inbox_id: int | None
    inbox_name: str
    channel: str
    channel_type: str
    contact_id: int | None
    contact_name: str
    contact: dict[str, Any]
    status: str
    assignee_type: str | None
    assignee_id: int | None
    team_id: int | None
    labels: tuple[str, ...]
    can_reply: bool
    owner: str
    """Who answers: ``bot``, ``human`` or ``paused``."""
    owner_reason: str
    owner_changed_at: float | None
    crew: str
    last_message_at: float | None
    last_message_preview: str
    last_message_role: str
    created_at: float
    updated_at: float
    last_activity_at: float | None = None
    """Chatwoot's own last activity time (orders snapshots that arrive out of order)."""
    rule: str = ""
    """The routing rule of the bot's latest answer (analytics)."""
    mode: str = "auto"
    """The mode of the bot's latest turn (``auto``, ``draft``, ``shadow``)."""
    remote_updated_at: float | None = None
    """Chatwoot's updated_at of the conversation (with last_activity_at, orders snapshots)."""

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ConversationRow:
        return cls(
            account_id=row["account_id"],
            conversation_id=row["conversation_id"],
            inbox_id=row["inbox_id"],
            inbox_name=row["inbox_name"],
            channel=row["channel"],
            channel_type=row["channel_type"],
            contact_id=row["contact_id"],
            contact_name=row["contact_name"],
            contact=_loads(row["contact_json"], {}),
            status=row["status"],
            assignee_type=row["assignee_type"],
            assignee_id=row["assignee_id"],
            team_id=row["team_id"],
            labels=tuple(_loads(row["labels"], [])),
            can_reply=bool(row["can_reply"]),
            owner=row["owner"],
            owner_reason=row["owner_reason"],
            owner_changed_at=row["owner_changed_at"],
            crew=row["crew"],
            last_message_at=row["last_message_at"],
            last_message_preview=row["last_message_preview"],
            last_message_role=row["last_message_role"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            last_activity_at=row.get("last_activity_at"),
            rule=row.get("rule") or "",
            mode=row.get("mode") or "auto",
            remote_updated_at=row.get("remote_updated_at"),
        )


@dataclass(frozen=True, slots=True)
class MessageRow:
    """One message of a conversation's history."""

    id: int
    account_id: int
    conversation_id: int
    message_id: int | None
    role: str
    """``customer``, ``bot``, ``agent``, ``note`` or ``template``."""
    sender_type: str
    sender_id: int | None
    content: str
    content_type: str
    attachments: tuple[dict[str, Any], ...]
    private: bool
    created_at: float
    job_id: int | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> MessageRow:
        return cls(
            id=row["id"],
            account_id=row["account_id"],
            conversation_id=row["conversation_id"],
            message_id=row["message_id"],
            role=row["role"],
            sender_type=row["sender_type"],
            sender_id=row["sender_id"],
            content=row["content"],
            content_type=row["content_type"],
            attachments=tuple(_loads(row["attachments"], [])),
            private=bool(row["private"]),
            created_at=row["created_at"],
            job_id=row["job_id"],
        )


@dataclass(frozen=True, slots=True)
class Job:
    """One unit of crew work: a debounced burst of customer messages."""

    id: int
    request_id: str
    account_id: int
    conversation_id: int
    state: str
    message_ids: tuple[int, ...]
    first_message_at: float
    run_at: float
    attempts: int
    apply_attempts: int
    deadline_at: float | None
    lease_owner: str | None
    lease_expires_at: float | None
    crew: str | None
    backend: str | None
    route_source: str | None
    route_reason: str | None
    route_confidence: float | None
    envelope_json: str | None
    """The crew request exactly as stored (every attempt sends these bytes)."""
    actions: tuple[dict[str, Any], ...] | None
    external_id: str | None
    last_error: str
    outcome: str
    created_at: float
    updated_at: float
    finished_at: float | None
    mode: str = "auto"
    """``auto``, ``draft`` (answers become private notes) or ``shadow`` (answers only recorded)."""
    rule: str = ""
    """The routing rule that chose the crew (its name, or ``rule N``); empty for the default."""
    shadow_of: int | None = None
    """Set on a shadow job: the live job of the same burst (a shadow job never blocks the queue)."""

    @property
    def envelope(self) -> dict[str, Any] | None:
        """The stored crew request, parsed (None until the job was routed)."""
        doc = _loads(self.envelope_json, None)
        return doc if isinstance(doc, dict) else None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Job:
        actions = _loads(row["actions"], None)
        return cls(
            id=row["id"],
            request_id=row["request_id"],
            account_id=row["account_id"],
            conversation_id=row["conversation_id"],
            state=row["state"],
            message_ids=tuple(_loads(row["message_ids"], [])),
            first_message_at=row["first_message_at"],
            run_at=row["run_at"],
            attempts=row["attempts"],
            apply_attempts=row["apply_attempts"],
            deadline_at=row["deadline_at"],
            lease_owner=row["lease_owner"],
            lease_expires_at=row["lease_expires_at"],
            crew=row["crew"],
            backend=row["backend"],
            route_source=row["route_source"],
            route_reason=row["route_reason"],
            route_confidence=row["route_confidence"],
            envelope_json=row["envelope"],
            actions=tuple(actions) if isinstance(actions, list) else None,
            external_id=row["external_id"],
            last_error=row["last_error"],
            outcome=row["outcome"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            finished_at=row["finished_at"],
            mode=row.get("mode") or "auto",
            rule=row.get("rule") or "",
            shadow_of=row.get("shadow_of"),
        )


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """One crew action as applied (or being applied) in Chatwoot."""

    job_id: int
    idx: int
    kind: str
    account_id: int
    conversation_id: int
    content_hash: str
    state: str
    """``started`` (call in progress or outcome unknown) or ``done``."""
    chatwoot_message_id: int | None
    detail: str
    started_at: float
    finished_at: float | None


@dataclass(frozen=True, slots=True)
class RoutingDecisionRow:
    """One routing decision: which crew, decided by whom and why."""

    id: int
    job_id: int | None
    account_id: int
    conversation_id: int
    crew: str
    source: str
    reason: str
    confidence: float | None
    decided_at: float
    rule: str = ""
    mode: str = "auto"


@dataclass(frozen=True, slots=True)
class CrewAttempt:
    """One request sent to a crew back-end."""

    id: int
    job_id: int
    request_id: str
    crew: str
    backend: str
    attempt: int
    started_at: float
    duration: float | None
    outcome: str
    status_code: int | None
    error: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A job that gave up, with what it carried and why."""

    job: Job
    reason: str
    messages: tuple[MessageRow, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Queue figures for health, metrics and the console."""

    pending: int
    in_flight: int
    waiting: int
    dead: int
    oldest_pending_age: float | None

    @property
    def depth(self) -> int:
        """Jobs not yet finished (pending, in flight or waiting for a callback)."""
        return self.pending + self.in_flight + self.waiting


class JournalBacklog(NamedTuple):
    """Deliveries acknowledged to Chatwoot but not yet applied (health, status, console)."""

    unapplied: int
    oldest_age: float | None
    """Seconds since the oldest of them was received (None when there is none)."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One change of configuration, secrets already redacted by the caller."""

    id: int
    at: float
    actor: str
    keys: tuple[str, ...]
    changes: dict[str, Any]


@dataclass(frozen=True, slots=True)
class OperatorAction:
    """One write made by an operator (console or API): who, when, what."""

    id: int
    at: float
    actor: str
    action: str
    target: str
    detail: str


@dataclass(frozen=True, slots=True)
class Handoff:
    """One hand-off to a human: why, and what the reminder watchdog did about it."""

    id: int
    account_id: int
    conversation_id: int
    job_id: int | None
    category: str
    reason: str
    crew: str
    rule: str
    team_id: int | None
    at: float
    waiting_since: float
    """When the team's clock starts (the hand-off, or the next opening after hours)."""
    human_replied_at: float | None
    reminded_at: float | None
    escalated_at: float | None
