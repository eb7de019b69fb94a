"""Provides PostgresDatabase: the connector's state in a PostgreSQL database, on one connection.

The same synchronous interface as SqliteDatabase (``transaction``, ``write``, ``run_group``,
``read``, ``change_marker``, ``probe_write``), so the units of work, the console and the tests
run unchanged on either back-end. Transactions are READ COMMITTED; the stores lock what they
read before writing it (``FOR UPDATE``) where two processes could race, and claims skip rows
other processes hold (``SKIP LOCKED``).

A connection that breaks (server restart, network) is dropped; the next use opens a new one, so
the sidecar recovers by itself once the server is back. A deadlock or serialization failure runs
the unit again (``write``, ``run_group``) before anyone hears of it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg.rows import tuple_row

from state.errors import SchemaMismatch, StateError, StorageUnavailable
from state.postgres import maintenance
from state.postgres.connect import (
    as_state_error,
    connect,
    connection_broken,
    describe,
    error_kind,
    is_storage,
    is_transient,
    reason,
)
from state.postgres.migrations import KNOWN_MIGRATIONS, applied_names, apply_migrations
from state.sql import POSTGRESQL, Sql
from state.storage import StorageFigures
from state.tx import Tx

T = TypeVar("T")
Unit = Callable[[Tx], Any]
TRANSIENT_RETRIES = 4
"""Runs of a unit that hit a deadlock or serialization failure before its caller hears of it."""


def check_schema(conn: psycopg.Connection) -> None:
    """Raises SchemaMismatch unless the database has exactly the migrations we know."""
    applied = applied_names(conn)
    if applied is None:
        raise SchemaMismatch("the database has no connector schema (was it created by the sidecar?)")
    unknown = sorted(applied - set(KNOWN_MIGRATIONS))
    missing = [name for name in KNOWN_MIGRATIONS if name not in applied]
    if unknown:
        raise SchemaMismatch(
            f"the database was written by a newer connector (unknown migrations: {', '.join(unknown)})")
    if missing:
        raise SchemaMismatch(
            f"the database schema is older than this version (missing: {', '.join(missing)}); "
            "start the sidecar once to upgrade it")


class PostgresDatabase:
    """One connection to the state database; not thread-safe by itself (callers serialise)."""

    kind = "postgresql"

    def __init__(self, url: str, *, readonly: bool = False, migrate: bool = False, check: bool = True) -> None:
        self.url = url
        self.location = url
        self.path = describe(url)
        """Where the state is, for messages (host:port/database; never the password)."""
        self.readonly = readonly
        self._lock = threading.RLock()
        self._conn: psycopg.Connection | None = None
        self._tx: Tx | None = None
        self._connect()
        assert self._conn is not None
        try:
            if migrate and not readonly:
                apply_migrations(self._conn, time.time())
            if check:
                check_schema(self._conn)
        except psycopg.Error as exc:
            self._drop_connection()
            raise StorageUnavailable(f"cannot {'migrate' if migrate else 'read'} the schema of "
                                     f"{self.path}: {reason(exc, url)}") from None
        except SchemaMismatch:
            self._drop_connection()
            raise

    # -- connection ----------------------------------------------------------------------------
    def _connect(self) -> None:
        self._conn = connect(self.url, readonly=self.readonly)
        self._tx = Tx(Sql(self._conn, POSTGRESQL, tuple_rows=tuple_row), error_kind)

    @property
    def conn(self) -> psycopg.Connection:
        if connection_broken(self._conn):
            # The previous connection failed: try again, so the sidecar recovers by itself.
            self._drop_connection()
            self._connect()
        assert self._conn is not None
        return self._conn

    @property
    def tx(self) -> Tx:
        self.conn  # noqa: B018 - reconnects if needed
        assert self._tx is not None
        return self._tx

    def close(self) -> None:
        with self._lock:
            self._drop_connection()

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                pass

    def _fail(self, exc: BaseException) -> BaseException:
        """The state error to raise for ``exc``; a connection in doubt is dropped."""
        if is_storage(exc) or connection_broken(self._conn):
            self._drop_connection()
        return as_state_error(exc)

    # -- writes ------------------------------------------------------------------------------------
    def _begin(self, durable: bool) -> psycopg.Connection:
        """BEGIN, after setting how durable the commit must be.

        ``durable``: the commit waits for its WAL flush (``synchronous_commit=on``): a journaled
        delivery, the intent row before a Chatwoot call. Other commits use ``off``: PostgreSQL
        still commits them in order and never corrupts anything; after a server crash the last
        few hundred milliseconds of them may be lost and are redone (leases expire, retries run).
        """
        if self.readonly:
            raise StateError("this database was opened read-only")
        try:
            conn = self.conn
            # One round trip either way (no parameters: the simple protocol takes both statements).
            conn.execute("BEGIN" if durable else "BEGIN; SET LOCAL synchronous_commit = off")
        except psycopg.Error as exc:
            self._drop_connection()
            raise StorageUnavailable(reason(exc)) from None
        return conn

    def _rollback(self, conn: psycopg.Connection) -> None:
        try:
            conn.execute("ROLLBACK")
        except psycopg.Error:
            self._drop_connection()

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[Tx]:
        """One write transaction; database errors become StorageUnavailable or StateError and
        leave nothing half-written."""
        with self._lock:
            conn = self._begin(durable)
            try:
                yield self.tx
                conn.execute("COMMIT")
            except psycopg.Error as exc:
                self._rollback(conn)
                raise self._fail(exc) from exc
            except BaseException:
                self._rollback(conn)
                raise

    def write(self, unit: Callable[..., T], *args: Any, durable: bool = True) -> T:
        [(ok, value)] = self.run_group([lambda tx: unit(tx, *args)], durable=durable)
        if not ok:
            raise value
        return value

    def run_group(self, units: Sequence[Unit], *, durable: bool) -> list[tuple[bool, Any]]:
        """Runs each unit in its own transaction (PostgreSQL commits in parallel from several
        connections, so grouping buys little and would hold row locks longer); returns, per unit,
        ``(True, result)`` or ``(False, exception)``, each after its COMMIT returned."""
        with self._lock:
            return [self._run_one(unit, durable) for unit in units]

    def _run_one(self, unit: Unit, durable: bool) -> tuple[bool, Any]:
        for attempt in range(TRANSIENT_RETRIES + 1):
            try:
                conn = self._begin(durable)
            except StorageUnavailable as exc:
                return False, exc
            try:
                result = unit(self.tx)
                conn.execute("COMMIT")
            except Exception as exc:  # noqa: BLE001 - handed to the unit's caller
                self._rollback(conn)
                cause = exc.__cause__ if isinstance(exc, StateError) and exc.__cause__ is not None else exc
                if is_transient(cause) and attempt < TRANSIENT_RETRIES:
                    time.sleep(0.005 * (attempt + 1))
                    continue
                return False, self._fail(exc) if isinstance(exc, psycopg.Error) else exc
            except BaseException:
                self._rollback(conn)
                raise
            return True, result
        raise AssertionError("unreachable")  # pragma: no cover

    # -- reads --------------------------------------------------------------------------------------
    def read(self, fn: Callable[..., T], *args: Any) -> T:
        """A read on this connection (autocommit: each statement sees the latest commits)."""
        with self._lock:
            try:
                return fn(self.tx, *args)
            except psycopg.Error as exc:
                raise self._fail(exc) from exc

    # -- upkeep (the same methods as SqliteDatabase's; state.postgres.maintenance says why) -----------
    def storage(self) -> StorageFigures:
        """The database's size (``pg_database_size``); autovacuum gives its space back."""
        with self._lock:
            try:
                return maintenance.figures(self.conn)
            except psycopg.Error as exc:
                raise self._fail(exc) from exc

    def give_back(self, pages: int) -> int:
        """Nothing to do: autovacuum makes deleted rows' space reusable by itself; 0 pages."""
        return 0

    def compact(self) -> None:
        """Refused: shrinking the files means VACUUM FULL, which locks each table while it runs."""
        raise StateError("the state is in PostgreSQL: autovacuum makes pruned rows' space reusable by itself; "
                         "to shrink the files, run VACUUM FULL or pg_repack in a maintenance window")

    def erase(self, unit: Callable[..., T], *args: Any, clear_wal: bool = True) -> tuple[T, bool]:
        """Runs ``unit(tx, *args)`` in a durable transaction, then (``clear_wal``) a plain VACUUM of
        the tables an erasure touches, which removes the old row versions holding the erased
        text. Returns the unit's result and whether that VACUUM ran."""
        result = self.write(unit, *args, durable=True)
        return result, self.clear_wal() if clear_wal else False

    def clear_wal(self) -> bool:
        """SQLite empties its WAL of old page copies here; PostgreSQL's counterpart is removing the
        dead row versions an erasure left (a plain VACUUM of its tables). False when it failed."""
        with self._lock:
            try:
                maintenance.vacuum(self.conn)
            except psycopg.Error as exc:
                self._fail(exc)
                return False
            return True

    def change_marker(self) -> int:
        """A number that changes whenever a transaction that wrote commits: the next transaction
        id (cheap; it also moves on writes to other databases of the server, which only costs a
        needless refresh)."""
        with self._lock:
            try:
                row = self.conn.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS x").fetchone()
            except psycopg.Error as exc:
                raise self._fail(exc) from exc
            return int(row["x"])

    def probe_write(self) -> float:
        """A real write and read back; returns the seconds it took (the health check)."""
        started = time.monotonic()
        token = uuid.uuid4().hex
        # A key of its own: the pool's connections probe at the same moment (the monitor's cycle
        # and a /health request), and with one shared key one would read back the other's token
        # and report the database down.
        key = f"health.probe.{token}"
        with self.transaction(durable=True) as tx:
            tx.documents.put(key, {"token": token}, time.time())
        if (self.read(lambda t: t.documents.get(key)) or {}).get("token") != token:
            raise StorageUnavailable("health probe did not read back what it wrote")
        took = time.monotonic() - started
        with self.transaction(durable=False) as tx:
            tx.documents.delete(key)
        return took
