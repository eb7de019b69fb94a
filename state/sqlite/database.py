"""Provides SqliteDatabase: the connector's state in one SQLite file (WAL), opened for writing or reading.

Writers use ``BEGIN IMMEDIATE`` (a read-then-write transaction never fails with SQLITE_BUSY on lock
promotion) and a busy timeout, so several processes can write the same file: SQLite's own lock
serialises them. A failed statement drops the connection; the next use opens a new one, so the
sidecar recovers by itself once storage is back (full disk, read-only file).
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from state.errors import StateError, StorageUnavailable
from state.sql import SQLITE, Sql
from state.sqlite import maintenance
from state.sqlite.connect import apply_migrations, check_schema, connect_reader, connect_writer
from state.sqlite.search import SqliteSearch
from state.storage import StorageFigures
from state.tx import Tx

T = TypeVar("T")
Unit = Callable[[Tx], Any]


def error_kind(exc: BaseException) -> type[StateError] | None:
    """SQLite's storage trouble (full disk, I/O error, lock, read-only file) vs a statement's fault."""
    if isinstance(exc, sqlite3.OperationalError):
        return StorageUnavailable
    if isinstance(exc, sqlite3.Error):
        return StateError
    return None


def _as_state_error(exc: BaseException) -> BaseException:
    return StorageUnavailable(str(exc)) if isinstance(exc, sqlite3.Error) else exc


class SqliteDatabase:
    """One connection to the state file; not thread-safe by itself (callers serialise)."""

    kind = "sqlite"

    def __init__(self, path: str, *, readonly: bool = False, migrate: bool = False) -> None:
        self.path = path
        self.location = path
        self.readonly = readonly
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._tx: Tx | None = None
        self._synchronous = "FULL"
        self._connect()
        if migrate and not readonly:
            try:
                apply_migrations(self._conn)  # type: ignore[arg-type]
            except sqlite3.Error as exc:
                raise StorageUnavailable(f"cannot migrate {path}: {exc}") from exc
            # A small file made before auto_vacuum converts now; a large one waits for `compact`.
            maintenance.convert_if_small(self._conn, path)  # type: ignore[arg-type]
        check_schema(self.conn)

    # -- connection ----------------------------------------------------------------------------
    def _connect(self) -> None:
        self._conn = connect_reader(self.path) if self.readonly else connect_writer(self.path)
        sql = Sql(self._conn, SQLITE)
        self._tx = Tx(sql, error_kind, SqliteSearch(sql))
        self._synchronous = "FULL"

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            # The previous connection failed: try again, so the sidecar recovers by itself.
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
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _drop_connection(self) -> None:
        try:
            if self._conn is not None:
                self._conn.close()
        except sqlite3.Error:
            pass
        self._conn = None

    # -- writes ------------------------------------------------------------------------------------
    def _begin(self, durable: bool) -> sqlite3.Connection:
        """BEGIN IMMEDIATE, after setting how durable the commit must be.

        Only what an outside party relies on needs an fsync per commit (synchronous=FULL): a
        journaled delivery (Chatwoot never resends it) and the intent row before a Chatwoot call
        (never post twice). Other commits use NORMAL: WAL commits stay in order, so the next FULL
        commit makes them durable too, and after an OS crash the few lost ones are redone.
        """
        if self.readonly:
            raise StateError("this database was opened read-only")
        try:
            conn = self.conn
            wanted = "FULL" if durable else "NORMAL"
            if wanted != self._synchronous:
                conn.execute(f"PRAGMA synchronous={wanted}")
                self._synchronous = wanted
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._drop_connection()
            raise StorageUnavailable(str(exc)) from exc
        return conn

    def _abort(self, conn: sqlite3.Connection, *, drop: bool) -> None:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            drop = True
        if drop:
            self._drop_connection()

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[Tx]:
        """One write transaction; storage errors become StorageUnavailable and leave nothing
        half-written."""
        with self._lock:
            conn = self._begin(durable)
            try:
                yield self.tx
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._abort(conn, drop=True)
                raise StorageUnavailable(str(exc)) from exc
            except BaseException:
                self._abort(conn, drop=False)
                raise

    def write(self, unit: Callable[..., T], *args: Any, durable: bool = True) -> T:
        with self.transaction(durable=durable) as tx:
            return unit(tx, *args)

    def run_group(self, units: Sequence[Unit], *, durable: bool) -> list[tuple[bool, Any]]:
        """Group commit: several independent units in ONE transaction and one COMMIT (one fsync).

        Optimistic: the units run one after the other without savepoints (two statements per
        unit saved). If one raises, the whole transaction is rolled back and every unit runs
        again in its own savepoint, so a unit that raises is undone alone and only that unit gets
        its exception (an SQLite error becomes StorageUnavailable); units are plain functions of
        the database, so running them again is safe. Returns, per unit, ``(True, result)`` or
        ``(False, exception)``, and only after the COMMIT returned: no unit is reported done
        before it is durable. If BEGIN, a savepoint rollback or the COMMIT fails, every unit gets
        StorageUnavailable and nothing of the group is written.
        """
        with self._lock:
            try:
                conn = self._begin(durable)
            except StorageUnavailable as exc:
                return [(False, exc) for _ in units]
            try:
                tx = self.tx
                try:
                    outcomes: list[tuple[bool, Any]] = [(True, unit(tx)) for unit in units]
                except Exception as first:  # noqa: BLE001 - isolate the failing unit, below
                    conn.execute("ROLLBACK")
                    if len(units) == 1:
                        self._drop_if_storage(first)
                        return [(False, _as_state_error(first))]
                    conn.execute("BEGIN IMMEDIATE")
                    outcomes = self._run_isolated(conn, tx, units)
                if not conn.in_transaction:
                    raise sqlite3.OperationalError("the group's transaction was rolled back by SQLite")
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._abort(conn, drop=True)
                return [(False, StorageUnavailable(str(exc))) for _ in units]
            except BaseException:
                self._abort(conn, drop=False)
                raise
            return outcomes

    @staticmethod
    def _run_isolated(conn: sqlite3.Connection, tx: Tx, units: Sequence[Unit]) -> list[tuple[bool, Any]]:
        outcomes: list[tuple[bool, Any]] = []
        for unit in units:
            conn.execute("SAVEPOINT unit")
            try:
                result = unit(tx)
            except Exception as exc:  # noqa: BLE001 - handed to that unit's caller
                conn.execute("ROLLBACK TO unit")
                conn.execute("RELEASE unit")
                outcomes.append((False, _as_state_error(exc)))
            else:
                conn.execute("RELEASE unit")
                outcomes.append((True, result))
        return outcomes

    def _drop_if_storage(self, exc: BaseException) -> None:
        if isinstance(exc, sqlite3.OperationalError):
            self._drop_connection()

    # -- reads --------------------------------------------------------------------------------------
    def read(self, fn: Callable[..., T], *args: Any) -> T:
        """A read on this connection. On a read-only database each statement runs in autocommit
        mode, so no read transaction outlives its statement (checkpoints are never held back)."""
        with self._lock:
            try:
                return fn(self.tx, *args)
            except sqlite3.OperationalError as exc:
                self._drop_connection()
                raise StorageUnavailable(str(exc)) from exc
            except sqlite3.Error as exc:
                raise StateError(str(exc)) from exc

    # -- the file ----------------------------------------------------------------------------------
    def storage(self) -> StorageFigures:
        """The file's size, its free pages and whether they can be given back."""
        with self._lock:
            try:
                return maintenance.figures(self.conn, self.path)
            except sqlite3.Error as exc:
                self._drop_connection()
                raise StorageUnavailable(str(exc)) from exc

    def give_back(self, pages: int) -> int:
        """Returns up to ``pages`` free pages to the disk (a short write); how many."""
        with self._lock:
            try:
                return maintenance.give_back(self.conn, pages)
            except sqlite3.Error as exc:
                self._drop_connection()
                raise StorageUnavailable(str(exc)) from exc

    def compact(self) -> None:
        """Rewrites the whole file (VACUUM) with incremental auto-vacuum: every free page goes back
        to the disk. Holds the write lock throughout: only with the sidecar stopped."""
        with self._lock:
            try:
                maintenance.convert(self.conn, self.path)
            except sqlite3.Error as exc:
                self._drop_connection()
                raise StorageUnavailable(str(exc)) from exc

    def erase(self, unit: Callable[..., T], *args: Any, clear_wal: bool = True) -> tuple[T, bool]:
        """Runs ``unit(tx, *args)`` in a durable transaction that zeroes what it deletes or
        overwrites in the file, then (``clear_wal``) empties the WAL of older copies of those
        pages. Returns the unit's result and whether the WAL is empty now (else it empties at a
        later checkpoint)."""
        with self._lock:
            maintenance.set_secure_delete(self.conn, True)
            try:
                with self.transaction(durable=True) as tx:
                    result = unit(tx, *args)
            finally:
                if self._conn is not None:
                    maintenance.set_secure_delete(self._conn, maintenance.SECURE_DELETE_DEFAULT)
            return result, self.clear_wal() if clear_wal else False

    def clear_wal(self) -> bool:
        """Copies the WAL into the file and empties it; False when a reader or another writer kept
        it from finishing now."""
        with self._lock:
            return maintenance.clear_wal(self.conn)

    def change_marker(self) -> int:
        """A number that changes whenever another connection commits (a cheap change check)."""
        with self._lock:
            return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    def probe_write(self) -> float:
        """A real write and read back; returns the seconds it took (the health check)."""
        started = time.monotonic()
        token = uuid.uuid4().hex
        with self.transaction(durable=True) as tx:
            tx.documents.put("health.probe", {"token": token}, time.time())
        if (self.read(lambda t: t.documents.get("health.probe")) or {}).get("token") != token:
            raise StorageUnavailable("health probe did not read back what it wrote")
        return time.monotonic() - started
