"""Provides the connector's durable state: the only package that talks to the database.

Two back-ends behind one interface: SQLite (``state.sqlite``, one file, the default) and
PostgreSQL (``state.postgres``, shared by several processes and replicas); a location is a
SQLite path or a ``postgresql://`` URL.

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

from typing import TYPE_CHECKING, Any, Union

from state import operator, vocabulary
from state.errors import DatabaseMissing, SchemaMismatch, StateError, StorageUnavailable
from state.postgres import DEFAULT_POOL_SIZE, is_url
from state.postgres import describe as describe_url
from state.postgres import redact as redact_url
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
from state.sqlite.service import SqliteService
from state.storage import StorageFigures
from state.stores.jobs import MAX_BURST_MESSAGES, Route
from state.tx import Tx

if TYPE_CHECKING:
    from state.postgres.database import PostgresDatabase
    from state.postgres.service import PostgresService

# The PostgreSQL classes load psycopg: named here by reference only, imported on first use
# (open_database, open_service, or ``from state import PostgresDatabase``).
Database = Union[SqliteDatabase, "PostgresDatabase"]  # noqa: UP007 - a forward reference needs Union
"""A synchronous handle on the state, whichever the back-end (the same methods on both)."""
StateService = Union[SqliteService, "PostgresService"]  # noqa: UP007
"""The sidecar's asynchronous handle on the state, whichever the back-end."""


def __getattr__(name: str) -> Any:
    if name in ("PostgresDatabase", "PostgresService"):
        import state.postgres

        return getattr(state.postgres, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_database(location: str, *, readonly: bool = False, migrate: bool = False) -> Database:
    """Opens the state at ``location``.

    Args:
        location: a SQLite file's path, or a ``postgresql://`` (``postgres://``) URL.
        readonly: a connection that cannot write (the console's reads).
        migrate: apply pending migrations (the sidecar at start-up, never the console).
    """
    if is_database_url(location):
        from state.postgres.database import PostgresDatabase

        return PostgresDatabase(location, readonly=readonly, migrate=migrate)
    return SqliteDatabase(location, readonly=readonly, migrate=migrate)


def open_service(location: str, *, migrate: bool = True, pool_size: int | None = None) -> StateService:
    """The sidecar's asynchronous access to the state at ``location`` (a SQLite path or a
    PostgreSQL URL), migrated on open. ``pool_size``: PostgreSQL connections (and threads)."""
    if is_database_url(location):
        from state.postgres.service import PostgresService

        return PostgresService(location, migrate=migrate, pool_size=pool_size or DEFAULT_POOL_SIZE)
    return SqliteService(location, migrate=migrate)


def is_database_url(location: str) -> bool:
    """Whether ``location`` is a PostgreSQL URL (else it is a SQLite file's path)."""
    return is_url(location)


def shown_location(location: str) -> str:
    """What messages and screens may show of a location: a path as it is, a PostgreSQL URL as
    ``host:port/database`` (never the user's password)."""
    return describe_url(location) if is_url(location) else location


__all__ = [
    "MAX_BURST_MESSAGES", "SCHEMA_NAME", "ActionRecord", "AuditEntry", "ConversationRow", "CrewAttempt",
    "Database", "DatabaseMissing", "DeadLetter", "Delivery", "Handoff", "Job", "JournalBacklog", "MessageRow",
    "OperatorAction", "PendingDelivery", "PostgresDatabase", "PostgresService", "QueueStats", "Route",
    "RoutingDecisionRow", "SchemaMismatch", "SqliteDatabase", "SqliteService", "StateError", "StateService",
    "StorageFigures", "StorageUnavailable", "Tx", "is_database_url", "open_database", "open_service", "operator",
    "redact_url", "shown_location", "vocabulary",
]
