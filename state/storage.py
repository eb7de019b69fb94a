"""Provides StorageFigures: how big the state is and whether it gives freed space back by itself,
whichever the back-end (SQLite: ``state.sqlite.maintenance``; PostgreSQL: ``state.postgres.maintenance``)."""

from __future__ import annotations

from dataclasses import dataclass

GIVES_BACK = ("incremental", "autovacuum")
"""``auto_vacuum`` values of a state that gives freed space back without an operator: SQLite's
incremental auto-vacuum (retention's steps), PostgreSQL's autovacuum (the server's own job)."""


@dataclass(frozen=True, slots=True)
class StorageFigures:
    """How big the state is and how much of it is free."""

    file_bytes: int
    """The database: SQLite's file, PostgreSQL's ``pg_database_size`` (tables, indexes, TOAST)."""
    wal_bytes: int
    """SQLite's write-ahead log (``-wal``), emptied at checkpoints; 0 on PostgreSQL (the server's
    WAL is shared by every database on it and is the server's business)."""
    page_size: int
    pages: int
    free_pages: int
    """Pages inside the file holding nothing (reused for new rows, or given back). PostgreSQL: 0,
    not measured (dead rows are found by autovacuum; measuring them needs pgstattuple's full scans)."""
    auto_vacuum: str
    """``incremental`` (free pages can be given back), ``none`` (needs ``compact`` once) or ``full``
    (SQLite); ``autovacuum`` (PostgreSQL: the server reclaims dead rows by itself)."""

    @property
    def reusable_bytes(self) -> int:
        return self.free_pages * self.page_size

    @property
    def needs_compact(self) -> bool:
        """A SQLite file made before auto-vacuum: it never shrinks until ``compact`` rewrites it."""
        return self.auto_vacuum not in GIVES_BACK

    def to_dict(self) -> dict[str, object]:
        return {"file_bytes": self.file_bytes, "wal_bytes": self.wal_bytes, "reusable_bytes": self.reusable_bytes,
                "auto_vacuum": self.auto_vacuum}
