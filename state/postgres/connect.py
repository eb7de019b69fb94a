"""Provides connections to the PostgreSQL state: URL checks, connecting, error classification.

The URL's password is a secret: :func:`redact` is the only form of a URL that goes into an error
message, and a connection error's own text (which may quote the connection string) is replaced
by what happened, never passed on as it is.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg.rows import dict_row

from state.errors import DatabaseMissing, StateError, StorageUnavailable
from state.postgres.urls import SCHEMES, check_url, describe, is_url, redact

CONNECT_TIMEOUT_SECONDS = 5
"""How long connecting may take before the database counts as unreachable."""
IDLE_IN_TRANSACTION_SECONDS = 10.0
"""A session left in the middle of a transaction this long is ended by the server, its locks
released and its writes undone. A unit of work never waits for anything but the database inside
its transaction (milliseconds); a process paused there (SIGSTOP, a frozen VM, a debugger) would
otherwise hold its row locks, and every other process and replica waiting for them, for as long
as it stays paused. Its lease fencing already keeps it from doing harm when it comes back."""
_STORAGE_CLASSES = ("08", "53", "57", "58", "40")
"""SQLSTATE classes that mean storage trouble, not a statement's fault: connection exception,
insufficient resources (disk full, too many connections), operator intervention (shutdown,
terminated), system error (I/O), transaction rollback (deadlock, serialization: retried first)."""
_STORAGE_STATES = frozenset({
    "25006",  # read-only transaction: the server or database is read-only (like a read-only file)
    "42P01",  # undefined table: the schema is gone (like SQLite's "no such table")
    "25P03",  # idle-in-transaction timeout: the server ended a session left inside a transaction
})
TRANSIENT_CLASS = "40"
"""Deadlock or serialization failure: the transaction is run again (a few times) before anyone hears."""


def connect(url: str, *, readonly: bool = False, application_name: str = "chatwoot-connector") -> psycopg.Connection:
    """One autocommit connection (transactions are begun explicitly by the database classes);
    rows come back as dicts. Raises StorageUnavailable, with a message free of the password."""
    try:
        conn = psycopg.connect(url, autocommit=True, row_factory=dict_row,
                               connect_timeout=CONNECT_TIMEOUT_SECONDS, application_name=application_name)
    except psycopg.Error as exc:
        text = reason(exc, url)
        if readonly and "database" in text and "does not exist" in text:
            # Like a missing SQLite file: nothing to read until the sidecar has created it.
            raise DatabaseMissing(f"no database {describe(url)}") from None
        raise StorageUnavailable(f"cannot connect to PostgreSQL at {describe(url)}: {text}") from None
    try:
        # Times are epoch seconds (double precision); the session's time zone never matters.
        # One round trip (no parameters: the simple protocol takes several statements).
        settings = f"SET idle_in_transaction_session_timeout = {round(IDLE_IN_TRANSACTION_SECONDS * 1000)}"
        if readonly:
            settings += "; SET default_transaction_read_only = on"
        conn.execute(settings)
    except psycopg.Error as exc:
        conn.close()
        raise StorageUnavailable(f"cannot use PostgreSQL at {describe(url)}: {reason(exc, url)}") from None
    return conn


def reason(exc: BaseException, url: str | None = None) -> str:
    """A one-line description of a psycopg error without secrets (the password, if the server
    or libpq quoted the connection string)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if url:
        try:
            password = urlsplit(url).password
        except ValueError:
            password = None
        if password:
            text = text.replace(password, "****")
    return text[:300]


def sqlstate(exc: BaseException) -> str:
    return getattr(exc, "sqlstate", None) or ""


def is_transient(exc: BaseException) -> bool:
    """A deadlock or a serialization failure: running the transaction again will do."""
    return isinstance(exc, psycopg.Error) and sqlstate(exc).startswith(TRANSIENT_CLASS)


def is_storage(exc: BaseException) -> bool:
    """Storage trouble (the server, the connection, the disk), as opposed to a statement's fault."""
    if not isinstance(exc, psycopg.Error):
        return False
    state = sqlstate(exc)
    if state:
        return state[:2] in _STORAGE_CLASSES or state in _STORAGE_STATES
    # No SQLSTATE: libpq's own failures (connection lost, server closed the connection).
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)


def error_kind(exc: BaseException) -> type[StateError] | None:
    """PostgreSQL's storage trouble vs a statement's fault (state.tx.ErrorKind)."""
    if is_storage(exc):
        return StorageUnavailable
    if isinstance(exc, psycopg.Error):
        return StateError
    return None


def as_state_error(exc: BaseException) -> BaseException:
    """A psycopg error as the state package's own; anything else unchanged."""
    kind = error_kind(exc)
    if kind is None:
        return exc
    error = kind(reason(exc))
    error.__cause__ = exc
    return error


def connection_broken(conn: Any) -> bool:
    """The connection cannot be used any more (closed, or lost in the middle of something)."""
    if conn is None or conn.closed or conn.broken:
        return True
    status = conn.info.transaction_status
    return status == psycopg.pq.TransactionStatus.UNKNOWN


__all__ = ["SCHEMES", "as_state_error", "check_url", "connect", "connection_broken", "describe", "error_kind",
           "is_storage", "is_transient", "is_url", "reason", "redact"]
