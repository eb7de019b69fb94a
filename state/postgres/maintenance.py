"""Provides the PostgreSQL database's upkeep: its size, and what erasure asks of the server.

Giving space back is autovacuum's job here: it marks the rows retention deletes as free for new
ones, table by table, without an operator, so pruning keeps the database from growing. The files
shrink only by a full rewrite (``VACUUM FULL``, ``pg_repack``), which locks a table for its
duration: the connector never runs one (``python -m sidecar compact`` says so).

An erasure's UPDATEs leave the old row versions behind as dead tuples (no query sees them; their
bytes stay in the table's pages, and in its TOAST table for long texts, until vacuumed). Right
after an erasure the connector runs a plain ``VACUUM`` of the tables it touched: it removes those
dead tuples without blocking reads or writes (unlike VACUUM FULL), and costs a pass over the pages
changed since the last vacuum. It runs with ``TRUNCATE false``: a plain VACUUM's last phase, giving
empty pages at a table's end back to the file system, takes an ACCESS EXCLUSIVE lock that holds up
every INSERT into the table meanwhile (a webhook's journal row among them), and gives back almost
nothing here. What it cannot reach, like any PostgreSQL deployment: the WAL
segments and archives, base backups and replicas' copies, which keep the old text until they are
recycled or expire (README, "Erasure").
"""

from __future__ import annotations

import psycopg

from state.storage import StorageFigures

ERASED_TABLES = ("conversations", "messages", "deliveries", "jobs", "crew_attempts", "routing_decisions",
                 "outcomes", "handoffs", "actions_applied")
"""Every table an erasure overwrites text in (state.erasure)."""


def figures(conn: psycopg.Connection) -> StorageFigures:
    """The database's size on disk (every table, index and TOAST table of this database)."""
    row = conn.execute("SELECT pg_database_size(current_database()) AS size, "
                       "current_setting('block_size')::int AS block").fetchone()
    assert row is not None
    size, block = int(row["size"]), int(row["block"])
    return StorageFigures(file_bytes=size, wal_bytes=0, page_size=block, pages=size // block, free_pages=0,
                          auto_vacuum="autovacuum")


def vacuum(conn: psycopg.Connection, tables: tuple[str, ...] = ERASED_TABLES) -> None:
    """A plain VACUUM of ``tables`` (an autocommit connection, outside any transaction: VACUUM
    cannot run inside one). Takes no lock that blocks reads or writes (``TRUNCATE false``: the
    module docstring says why)."""
    conn.execute(f"VACUUM (TRUNCATE false) {', '.join(tables)}")
