"""Provides retention: which rows the state may forget, in small batches, and the oldest row kept.

Each kind of row has its own age limit (``retention.<kind>_days`` in config.yaml; 0 keeps it
forever) and its own store method deleting one batch, oldest first, in portable SQL. What is never
deleted, whatever the limits: deliveries not applied yet, open jobs and dead letters (with their
attempts, actions, decisions and the messages of their conversations), and hand-offs still
waiting for a human. Giving the freed space back to the disk is the back-end's own business
(SQLite: ``state.sqlite.maintenance``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from state.tx import Tx

DAY = 86400.0

_PRUNE: dict[str, Callable[[Tx, float, int], int]] = {
    "deliveries": lambda tx, before, limit: tx.journal.prune(before, limit),
    "jobs": lambda tx, before, limit: tx.jobs.prune_finished(before, limit),
    "decisions": lambda tx, before, limit: tx.decisions.prune(before, limit),
    "messages": lambda tx, before, limit: tx.messages.prune(before, limit),
    "outcomes": lambda tx, before, limit: tx.outcomes.prune(before, limit),
    "handoffs": lambda tx, before, limit: tx.handoffs.prune(before, limit),
    "audit": lambda tx, before, limit: tx.audit.prune(before, limit),
    "metrics": lambda tx, before, limit: tx.metrics.prune(before, limit),
}
KINDS: tuple[str, ...] = tuple(_PRUNE)
"""Every kind of row retention prunes, in the order a pass visits them (config keys
``retention.<kind>_days``)."""

_OLDEST: dict[str, Callable[[Tx], float | None]] = {
    "deliveries": lambda tx: tx.journal.oldest(),
    "jobs": lambda tx: tx.jobs.oldest(),
    "decisions": lambda tx: tx.decisions.oldest(),
    "messages": lambda tx: tx.messages.oldest(),
    "outcomes": lambda tx: tx.outcomes.oldest(),
    "handoffs": lambda tx: tx.handoffs.oldest(),
    "audit": lambda tx: tx.audit.oldest(),
}


def cutoffs(days: Mapping[str, float], now: float) -> dict[str, float]:
    """Kind -> rows older than this moment may go; kinds kept forever (0 days) are left out."""
    return {kind: now - float(days[kind]) * DAY for kind in KINDS if float(days.get(kind, 0) or 0) > 0}


def prune_batch(tx: Tx, kind: str, before: float, limit: int) -> int:
    """Deletes one batch (at most ``limit`` rows) of ``kind`` older than ``before``; the number of
    rows deleted (fewer than ``limit``: nothing more to do for now)."""
    return _PRUNE[kind](tx, before, limit)


@dataclass(frozen=True, slots=True)
class OldestRows:
    """When the oldest row kept of each kind was written (None: that kind has no rows)."""

    by_kind: dict[str, float | None] = field(default_factory=dict)

    @property
    def oldest(self) -> tuple[str, float] | None:
        """(kind, time) of the oldest row kept across every kind, or None when all are empty."""
        found = [(at, kind) for kind, at in self.by_kind.items() if at is not None]
        if not found:
            return None
        at, kind = min(found)
        return kind, at


def oldest_rows(tx: Tx) -> OldestRows:
    """The oldest row kept of each kind (one indexed lookup each)."""
    return OldestRows({kind: read(tx) for kind, read in _OLDEST.items()})
