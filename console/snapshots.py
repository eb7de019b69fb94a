"""Provides the immutable records one refresh of each screen produces (no Textual here).

The reader builds these in a worker thread; screens only render them on the UI thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from state import (
    AuditEntry,
    ConversationRow,
    CrewAttempt,
    DeadLetter,
    Job,
    MessageRow,
    OperatorAction,
    QueueStats,
    RoutingDecisionRow,
    StorageFigures,
)

"""Owner values an operator can filter on."""


@dataclass(frozen=True, slots=True)
class Component:
    """Health of one component as last reported by the sidecar."""

    name: str
    status: str
    detail: str = ""
    latency_ms: float | None = None
    checked_at: float | None = None
    breaker: str = ""
    """``closed``, ``open`` or ``half_open`` for crew back-ends."""
    recent: str = ""
    """Recent failures / requests of a back-end, e.g. ``3/10``."""
    calls: str = ""
    """A back-end's crew calls in flight / its limit, plus those waiting for a slot: ``2/2 +5``."""

    @property
    def attention(self) -> bool:
        """Whether an operator should look at it (shown in red)."""
        return self.status not in ("ok", "disabled", "unknown", "") or self.breaker in ("open", "half_open")


@dataclass(frozen=True, slots=True)
class OverviewData:
    """Everything the overview shows."""

    now: float
    sidecar: str
    """``ok``, ``degraded``, ``down``, ``stale`` (no recent snapshot) or ``unknown``."""
    health_age: float | None
    warnings: tuple[str, ...]
    components: tuple[Component, ...]
    queue: QueueStats
    webhooks_per_minute: tuple[float, ...]
    latency_per_minute: tuple[float, ...]
    """Mean crew latency in seconds per minute (0 where no request ran)."""
    crew_requests: int
    crew_failures: int
    signature_rejections: int
    malformed_rejections: int
    webhooks_last_hour: int
    last_delivery_at: float | None
    unapplied: int = 0
    """Webhooks acknowledged but not yet turned into conversation state and work."""
    oldest_unapplied_age: float | None = None
    storage: StorageFigures | None = None
    """The state file's size and free space (None: could not be read)."""
    oldest_row: tuple[str, float] | None = None
    """(kind, when) of the oldest row kept, retention's horizon."""
    last_prune: dict[str, Any] | None = None
    """The latest retention pass's report (``retention.status``)."""

    @property
    def error_rate(self) -> float | None:
        """Share of crew requests in the last hour that failed or had to be retried."""
        return self.crew_failures / self.crew_requests if self.crew_requests else None


@dataclass(frozen=True, slots=True)
class ConversationQuery:
    """The filters and page of the conversations list."""

    channel: str = ""
    crew: str = ""
    owner: str = ""
    text: str = ""
    page: int = 0
    page_size: int = 50

    @property
    def filtered(self) -> bool:
        return bool(self.channel or self.crew or self.owner or self.text.strip())


@dataclass(frozen=True, slots=True)
class ConversationsPage:
    """One page of conversations plus what the filter pickers offer."""

    now: float
    query: ConversationQuery
    rows: tuple[ConversationRow, ...]
    has_next: bool
    total: int | None
    """All conversations (only counted when no filter is set: a filtered count would scan)."""
    channels: tuple[str, ...]
    crews: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ConversationDetail:
    """One conversation with its thread and what the sidecar did about it."""

    now: float
    account_id: int
    conversation_id: int
    conversation: ConversationRow | None
    messages: tuple[MessageRow, ...]
    decisions: tuple[RoutingDecisionRow, ...]
    jobs: tuple[Job, ...]
    attempts: tuple[CrewAttempt, ...]
    actions: tuple[dict[str, Any], ...]


@dataclass(frozen=True, slots=True)
class DecisionsData:
    """Recent routing decisions and their counts over a window."""

    now: float
    window_seconds: float
    rows: tuple[RoutingDecisionRow, ...]
    per_crew: tuple[tuple[str, int], ...]
    per_source: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class DeadLettersData:
    """The dead-letter list (newest first)."""

    now: float
    rows: tuple[DeadLetter, ...]
    total: int


@dataclass(frozen=True, slots=True)
class ConfigData:
    """The masked effective config, whether the last edit was valid, and the audit trails."""

    now: float
    status: dict[str, Any] | None
    effective: dict[str, Any] | None
    effective_age: float | None
    audit: tuple[AuditEntry, ...]
    operator_actions: tuple[OperatorAction, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class InboxHours:
    """One inbox with business hours, and whether it is open at the moment of the refresh."""

    inbox_id: int
    name: str
    mode: str
    open_now: bool
    detail: str
    """"open until 18:00 (America/Sao_Paulo)" or "closed, back Mon 08:00 (...)"."""


@dataclass(frozen=True, slots=True)
class AnalyticsData:
    """Outcome figures over a window (``state.analytics.summarize``), inboxes' hours and the
    newest shadow answers."""

    now: float
    window: str
    totals: dict[str, Any]
    crews: dict[str, dict[str, Any]]
    rules: dict[str, dict[str, Any]]
    inboxes: tuple[InboxHours, ...]
    shadow: tuple[dict[str, Any], ...]
    modes: dict[str, str] = field(default_factory=dict)
    """Where the config sets a mode other than auto: ``{"routing": "draft", "rule faq": "shadow"}``."""
