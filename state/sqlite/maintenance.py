"""Provides the SQLite file's upkeep: its size, giving freed pages back to the disk, converting a
file made before that was possible, and writes that leave no trace of what they overwrote.

Deleted rows leave free pages inside the file; SQLite reuses them for new rows, so pruning stops
the file from growing, but only ``auto_vacuum=INCREMENTAL`` lets ``PRAGMA incremental_vacuum``
hand them back to the disk, a few at a time (each step is a short write transaction). New files
are created that way (``state.sqlite.connect``). A file made before needs one ``VACUUM`` (a full
rewrite, holding the write lock throughout, needing about its size again in free disk): done at
start-up for a small file, by ``python -m sidecar compact`` for a large one.
"""

from __future__ import annotations

import os
import shutil
import sqlite3

from state.errors import StateError
from state.storage import StorageFigures

CONVERT_AT_START_BYTES = 64 * 1024 * 1024
"""A file up to this size is converted at start-up (about a second); a larger one waits for
``python -m sidecar compact`` (the sidecar must be stopped: the rewrite blocks every write)."""
_AUTO_VACUUM = {0: "none", 1: "full", 2: "incremental"}


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _pragma(conn: sqlite3.Connection, name: str) -> int:
    return int(conn.execute(f"PRAGMA {name}").fetchone()[0])


def figures(conn: sqlite3.Connection, path: str) -> StorageFigures:
    """The file's figures (pragmas any connection may read, and the files' sizes)."""
    return StorageFigures(file_bytes=_size(path), wal_bytes=_size(f"{path}-wal"), page_size=_pragma(conn, "page_size"),
                          pages=_pragma(conn, "page_count"), free_pages=_pragma(conn, "freelist_count"),
                          auto_vacuum=_AUTO_VACUUM.get(_pragma(conn, "auto_vacuum"), "none"))


def give_back(conn: sqlite3.Connection, pages: int) -> int:
    """Returns up to ``pages`` free pages to the disk (one short write transaction); how many it
    did. Nothing on a file that is not ``incremental``. Call it outside any transaction."""
    if _pragma(conn, "auto_vacuum") != 2:
        return 0
    before = _pragma(conn, "freelist_count")
    if before == 0:
        return 0
    # executescript steps the pragma to its end: execute() would free a single page (the pragma
    # returns a row per page, and the sqlite3 module stops at the first).
    conn.executescript(f"PRAGMA incremental_vacuum({int(pages)})")
    return before - _pragma(conn, "freelist_count")


def needs_conversion(conn: sqlite3.Connection) -> bool:
    return _pragma(conn, "auto_vacuum") != 2


def convert(conn: sqlite3.Connection, path: str) -> None:
    """Rewrites the file with ``auto_vacuum=INCREMENTAL`` (VACUUM), leaving it smaller by every
    free page. Raises StateError, changing nothing, when the disk has too little room for the copy."""
    size = _size(path) + _size(f"{path}-wal")
    free = shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free
    if free < 2 * size:
        raise StateError(f"compacting {path} needs about {2 * size // 2**20} MiB of free disk, "
                         f"{free // 2**20} MiB are free")
    conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    conn.execute("VACUUM")
    # The rewrite went through the WAL: copy it back and empty it, or the WAL stays file-sized.
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def convert_if_small(conn: sqlite3.Connection, path: str) -> bool:
    """Converts a file of at most CONVERT_AT_START_BYTES that is not ``incremental`` yet; False when
    nothing was done (already converted, too large, or another process kept the file busy)."""
    if not needs_conversion(conn) or _size(path) + _size(f"{path}-wal") > CONVERT_AT_START_BYTES:
        return False
    try:
        convert(conn, path)
    except (sqlite3.OperationalError, StateError):
        return False  # busy or short of disk: retention still works, the file just does not shrink
    return True


SECURE_DELETE_DEFAULT = "FAST"
"""Every writer zeroes what it deletes or overwrites inside the pages it writes anyway (no extra
I/O), so old texts do not linger in the file's free space; an erasure also zeroes whole freed pages."""


def set_secure_delete(conn: sqlite3.Connection, mode: bool | str) -> None:
    """``True`` (erasures: also freed pages), ``"FAST"`` (the default) or ``False``."""
    value = ("ON" if mode else "OFF") if isinstance(mode, bool) else mode
    conn.execute(f"PRAGMA secure_delete={value}")


def clear_wal(conn: sqlite3.Connection) -> bool:
    """Copies the WAL into the file and empties it, so old copies of pages are gone from it too;
    False when readers or another writer kept it from finishing (it empties at a later checkpoint)."""
    try:
        busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except sqlite3.OperationalError:
        return False
    return busy == 0 and _size_of_wal(conn) == 0


def _size_of_wal(conn: sqlite3.Connection) -> int:
    path = conn.execute("PRAGMA database_list").fetchone()[2]
    return _size(f"{path}-wal") if path else 0
