"""Provides backup and restore of the SQLite state with SQLite's online backup API.

A backup reads the live file through a read-only connection in one step, so it is one consistent
snapshot (a single read transaction) however busy the sidecar is; the sidecar keeps writing to
the WAL meanwhile. The copy is written next to its destination under a temporary name, checked
(``PRAGMA integrity_check``), made a single self-contained file (``journal_mode=DELETE``) and only
then renamed into place, so a half-written backup never carries the final name.

A restore checks the file first: a SQLite database, intact, with the connector's schema, and not
newer than this version (an older one is migrated right after). It copies the state it replaces
to ``<target>.before-restore-<time>`` first, then copies the backup into the target through the
same API (one transaction: a reader sees the old state or the new one, never a mix). Refusing
while a sidecar runs on the target is the caller's part (``sidecar.commands``).

PostgreSQL has its own tools for this (``pg_dump``/``pg_restore``; see the README).
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from state.errors import DatabaseMissing, SchemaMismatch, StateError
from state.sqlite.connect import SCHEMA_NAME, connect_reader, connect_writer
from state.sqlite.migrations import KNOWN_MIGRATIONS


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A connector state file as found on disk."""

    path: str
    bytes: int
    schema: str
    """The newest migration it has (e.g. ``0005_lifecycle``)."""
    conversations: int
    seconds: float = 0.0
    """How long making it took (backups)."""


def _open_file(path: str) -> sqlite3.Connection:
    """A read-only connection to a file that need not be in WAL mode (a backup)."""
    if not os.path.isfile(path):
        raise DatabaseMissing(f"no such file: {path}")
    conn = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True, isolation_level=None)
    conn.row_factory = sqlite3.Row
    return conn


def inspect(conn: sqlite3.Connection, path: str, *, file: str | None = None) -> Snapshot:
    """The file's schema and size after checking it is an intact connector state this version can
    use; raises SchemaMismatch (foreign or newer) or StateError (damaged). ``path`` names it in
    messages; ``file`` is where it is now, when that differs (a backup not renamed yet)."""
    try:
        names = [r[0] for r in conn.execute(
            "SELECT name FROM _sqlite_migrations WHERE migration_set=? ORDER BY name", (SCHEMA_NAME,))]
    except sqlite3.DatabaseError as exc:
        if "no such table" in str(exc):
            raise SchemaMismatch(f"{path} is not a connector state (no connector schema)") from exc
        raise SchemaMismatch(f"{path} is not a SQLite database ({exc})") from exc
    if not names:
        raise SchemaMismatch(f"{path} is not a connector state (no connector schema)")
    unknown = sorted(set(names) - set(KNOWN_MIGRATIONS))
    if unknown:
        raise SchemaMismatch(f"{path} was written by a newer connector (schema {unknown[-1]}; this version "
                             f"knows up to {KNOWN_MIGRATIONS[-1]})")
    try:
        verdict = conn.execute("PRAGMA integrity_check").fetchone()[0]
        conversations = int(conn.execute("SELECT count(*) FROM conversations").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        raise StateError(f"{path} is damaged ({exc})") from exc
    if verdict != "ok":
        raise StateError(f"{path} is damaged (integrity check: {verdict})")
    return Snapshot(path=path, bytes=os.path.getsize(file or path), schema=max(names), conversations=conversations)


def backup(source: str, destination: str, *, overwrite: bool = False) -> Snapshot:
    """Copies the state at ``source`` (running or not) to the single file ``destination``."""
    dest = Path(destination)
    if dest.exists() and not overwrite:
        raise FileExistsError(f"{destination} already exists")
    if not dest.parent.is_dir():
        raise FileNotFoundError(f"{dest.parent} is not a folder")
    started = time.monotonic()
    partial = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    src = connect_reader(source)
    try:
        copy = sqlite3.connect(partial, isolation_level=None)
        try:
            src.backup(copy)  # one step: one read transaction, one consistent snapshot
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
            snapshot = inspect(copy, destination, file=str(partial))
        finally:
            copy.close()
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, dest)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        src.close()
    return Snapshot(path=destination, bytes=os.path.getsize(dest), schema=snapshot.schema,
                    conversations=snapshot.conversations, seconds=time.monotonic() - started)


def check(path: str) -> Snapshot:
    """Checks a backup file before a restore (see :func:`inspect`)."""
    conn = _open_file(path)
    try:
        return inspect(conn, path)
    except sqlite3.DatabaseError as exc:
        raise SchemaMismatch(f"{path} is not a SQLite database ({exc})") from exc
    finally:
        conn.close()


def restore(source: str, target: str) -> tuple[Snapshot, str | None]:
    """Replaces the state at ``target`` with the backup ``source`` (checked first). Returns the
    backup's description and where the replaced state was kept (None when there was none)."""
    snapshot = check(source)
    kept = None
    if os.path.exists(target):
        kept = f"{target}.before-restore-{time.strftime('%Y%m%dT%H%M%S')}"
        backup(target, kept)
    src = _open_file(source)
    try:
        dst = connect_writer(target)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=WAL")
        finally:
            dst.close()
    finally:
        src.close()
    return snapshot, kept
