"""Provides the connector's durable state: the only package that touches SQLite.

The sidecar writes through :class:`Store` (one writer), the console reads through a
read-only :class:`Store`. Neither sanic, textual nor aiohttp is imported here.
"""

from __future__ import annotations

from state.db import SCHEMA_NAME, open_store
from state.errors import DatabaseMissing, SchemaMismatch, StateError, StorageUnavailable
from state.models import (
    ActionRecord,
    AuditEntry,
    ConversationRow,
    CrewAttempt,
    DeadLetter,
    Delivery,
    Job,
    JournalBacklog,
    MessageRow,
    OperatorAction,
    PendingDelivery,
    QueueStats,
    RoutingDecisionRow,
)
from state.store import Store, Tx

__all__ = [
    "SCHEMA_NAME",
    "ActionRecord",
    "AuditEntry",
    "ConversationRow",
    "CrewAttempt",
    "DatabaseMissing",
    "DeadLetter",
    "Delivery",
    "Job",
    "JournalBacklog",
    "MessageRow",
    "OperatorAction",
    "PendingDelivery",
    "QueueStats",
    "RoutingDecisionRow",
    "SchemaMismatch",
    "StateError",
    "StorageUnavailable",
    "Store",
    "Tx",
    "open_store",
]
