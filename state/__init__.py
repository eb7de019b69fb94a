"""Provides the connector's durable state: the only package that talks to the database.

- :func:`open_database`: a synchronous handle (the console, CLI tools, tests): ``transaction()``
  for writes, ``read()`` for reads, both through :class:`Tx`.
- :func:`open_service`: the sidecar's asynchronous handle: ``await service.write(unit)`` runs a
  unit of work in a transaction off the event loop (group commit), ``await service.read(unit)``
  reads committed state.
- :class:`Tx` groups the stores (``tx.journal``, ``tx.conversations``, ``tx.messages``, ``tx.jobs``,
  ``tx.effects``, ``tx.decisions``, ``tx.metrics``, ``tx.audit``, ``tx.documents``, ``tx.processes``),
  one per kind of thing the connector keeps; :mod:`state.vocabulary` holds the shared words.

Neither sanic, textual nor aiohttp is imported here.
"""

from __future__ import annotations

from state import operator, vocabulary
from state.errors import DatabaseMissing, SchemaMismatch, StateError, StorageUnavailable
from state.records import (
    ActionRecord,
    AuditEntry,
    ConversationRow,
    CrewAttempt,
    DeadLetter,
    Delivery,
    Handoff,
    Job,
    JournalBacklog,
    MessageRow,
    OperatorAction,
    PendingDelivery,
    QueueStats,
    RoutingDecisionRow,
)
from state.sqlite.connect import SCHEMA_NAME
from state.sqlite.database import SqliteDatabase
from state.sqlite.maintenance import StorageFigures
from state.sqlite.service import SqliteService
from state.stores.jobs import MAX_BURST_MESSAGES, Route
from state.tx import Tx

Database = SqliteDatabase
StateService = SqliteService


def open_database(path: str, *, readonly: bool = False, migrate: bool = False) -> Database:
    """Opens the state at ``path``.

    Args:
        path: the SQLite file shared by the sidecar and the console.
        readonly: a connection that cannot write (the console's reads).
        migrate: apply pending migrations (the sidecar at start-up, never the console).
    """
    return SqliteDatabase(path, readonly=readonly, migrate=migrate)


def open_service(path: str, *, migrate: bool = True) -> StateService:
    """The sidecar's asynchronous access to the state at ``path`` (migrated on open)."""
    return SqliteService(path, migrate=migrate)


__all__ = [
    "MAX_BURST_MESSAGES", "SCHEMA_NAME", "ActionRecord", "AuditEntry", "ConversationRow", "CrewAttempt",
    "Database", "DatabaseMissing", "DeadLetter", "Delivery", "Handoff", "Job", "JournalBacklog", "MessageRow",
    "OperatorAction", "PendingDelivery", "QueueStats", "Route", "RoutingDecisionRow", "SchemaMismatch",
    "StateError", "StateService", "StorageFigures", "StorageUnavailable", "Tx", "open_database", "open_service", "operator",
    "vocabulary",
]
