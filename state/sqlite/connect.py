"""Provides connection set-up for the connector's SQLite file (writers and readers) and its schema check."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from sqlite_utils import Database

from state.errors import DatabaseMissing, SchemaMismatch, StorageUnavailable
from state.sqlite.migrations import KNOWN_MIGRATIONS, MIGRATIONS

SCHEMA_NAME = "connector"

# Chatwoot does not resend account webhooks, so the ingest commit must survive an OS crash, not
# only a process crash: WAL + synchronous=FULL (docs/reliability.md). Bookkeeping commits switch
# to NORMAL (state.sqlite.database): in WAL mode a later FULL commit makes them durable too.
_WRITER_PRAGMAS = (
    # Before WAL: on a new file this is what lets retention give freed pages back to the disk
    # (it must be set before the first table exists). An existing file made without it keeps
    # its mode until it is converted (state.sqlite.maintenance), which this also prepares.
    "PRAGMA auto_vacuum=INCREMENTAL",
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
    # Keeps the WAL file from staying large after a burst once it has been checkpointed.
    "PRAGMA journal_size_limit=16777216",
    # Deleted and overwritten texts are zeroed inside the pages written anyway (no extra I/O):
    # customer text does not linger in the file's free space (state.sqlite.maintenance).
    "PRAGMA secure_delete=FAST",
)
_BUSY_TIMEOUT_SECONDS = 5.0


def connect_writer(path: str) -> sqlite3.Connection:
    """Opens the single writer connection, creating the file and its folder if needed."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a read-then-write
        # transaction never fails with SQLITE_BUSY on lock promotion.
        conn = sqlite3.connect(
            path, timeout=_BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
        for pragma in _WRITER_PRAGMAS:
            conn.execute(pragma)
    except (sqlite3.Error, OSError) as exc:
        raise StorageUnavailable(f"cannot open database {path}: {exc}") from exc
    return conn


def connect_reader(path: str) -> sqlite3.Connection:
    """Opens a read-only connection that can never take a write lock."""
    if not os.path.exists(path):
        raise DatabaseMissing(f"no database at {path}")
    try:
        conn = sqlite3.connect(
            f"file:{quote(os.path.abspath(path))}?mode=ro",
            uri=True,
            timeout=_BUSY_TIMEOUT_SECONDS,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA query_only=1")
        # A cheap read proves the file is a database and the WAL index is usable.
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise StorageUnavailable(f"cannot read database {path}: {exc}") from exc
    return conn


def apply_migrations(conn: sqlite3.Connection) -> None:
    """Brings the schema up to date (the sidecar calls this once at start-up)."""
    MIGRATIONS.apply(Database(conn))


def check_schema(conn: sqlite3.Connection) -> None:
    """Raises SchemaMismatch unless the database has exactly the migrations we know."""
    try:
        rows = conn.execute(
            "SELECT name FROM _sqlite_migrations WHERE migration_set = ?", (SCHEMA_NAME,)
        ).fetchall()
    except sqlite3.OperationalError as exc:
        raise SchemaMismatch(
            "the database has no connector schema (was it created by the sidecar?)"
        ) from exc
    applied = {row[0] for row in rows}
    missing = [name for name in KNOWN_MIGRATIONS if name not in applied]
    unknown = sorted(applied - set(KNOWN_MIGRATIONS))
    if unknown:
        raise SchemaMismatch(
            f"the database was written by a newer connector (unknown migrations: {', '.join(unknown)})"
        )
    if missing:
        raise SchemaMismatch(
            f"the database schema is older than this version (missing: {', '.join(missing)}); "
            "start the sidecar once to upgrade it"
        )
