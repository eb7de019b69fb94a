"""Provides Processes: the sidecar processes sharing this state, and leases for once-only work.

Every process (intake, worker, or both) writes its row every few seconds with what others may
want to know (its crew calls in flight); a row not refreshed for ``STALE_SECONDS`` belongs to a
process that is gone. A singleton lease (``leases``) lets one process at a time do work that must
run once per state (health probes and their snapshot, retention), across processes and replicas.
"""

from __future__ import annotations

from typing import Any

from state.sql import Sql, dumps, loads_or

STALE_SECONDS = 30.0
"""A process that has not written its row for this long is considered gone."""


class Processes:
    __slots__ = ("sql",)

    def __init__(self, sql: Sql) -> None:
        self.sql = sql

    def beat(self, process_id: str, *, role: str, host: str, pid: int, version: str, started_at: float,
             info: dict[str, Any], now: float) -> None:
        self.sql.execute(
            "INSERT INTO processes(id, role, host, pid, version, started_at, seen_at, info) VALUES (?,?,?,?,?,?,?,?) "
            "ON CONFLICT(id) DO UPDATE SET seen_at=excluded.seen_at, info=excluded.info",
            (process_id, role, host, pid, version, started_at, now, dumps(info)))

    def leave(self, process_id: str) -> None:
        self.sql.execute("DELETE FROM processes WHERE id=?", (process_id,))

    def live(self, now: float) -> list[dict[str, Any]]:
        """Processes seen within STALE_SECONDS, each with its ``info`` parsed."""
        rows = self.sql.all("SELECT * FROM processes WHERE seen_at>=? ORDER BY started_at", (now - STALE_SECONDS,))
        for row in rows:
            row["info"] = loads_or(row["info"], {})
        return rows

    def forget_stale(self, now: float) -> int:
        return self.sql.execute("DELETE FROM processes WHERE seen_at<?", (now - 10 * STALE_SECONDS,))

    def forget_all(self) -> None:
        """After a restore: the processes and leases the backup remembers are not running here."""
        self.sql.execute("DELETE FROM processes")
        self.sql.execute("DELETE FROM leases")

    # -- singleton leases ----------------------------------------------------------------------
    def hold(self, name: str, owner: str, now: float, ttl: float) -> bool:
        """Takes or keeps the lease ``name`` for ``ttl`` seconds; False while another holds it."""
        self.sql.execute(
            "INSERT INTO leases(name, owner, expires_at) VALUES (?,?,?) ON CONFLICT(name) DO UPDATE SET "
            "owner=excluded.owner, expires_at=excluded.expires_at WHERE leases.owner=excluded.owner "
            "OR leases.expires_at<?", (name, owner, now + ttl, now))
        return self.sql.scalar("SELECT owner FROM leases WHERE name=?", (name,)) == owner

    def release(self, name: str, owner: str) -> None:
        self.sql.execute("DELETE FROM leases WHERE name=? AND owner=?", (name, owner))
