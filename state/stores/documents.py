"""Provides Documents: small JSON documents the sidecar shares with the console (the kv table).

The keys are named in :mod:`state.vocabulary` (health snapshot, config status, ...).
"""

from __future__ import annotations

from typing import Any

from state.sql import Sql, dumps, loads_or


class Documents:
    __slots__ = ("sql",)

    def __init__(self, sql: Sql) -> None:
        self.sql = sql

    def put(self, key: str, value: Any, now: float) -> None:
        self.sql.execute(
            "INSERT INTO kv(key, value, updated_at) VALUES (?,?,?) ON CONFLICT(key) DO UPDATE SET "
            "value=excluded.value, updated_at=excluded.updated_at", (key, dumps(value), now))

    def get(self, key: str) -> Any:
        return loads_or(self.sql.scalar("SELECT value FROM kv WHERE key=?", (key,)), None)

    def delete(self, key: str) -> None:
        self.sql.execute("DELETE FROM kv WHERE key=?", (key,))

    def get_with_age(self, key: str) -> tuple[Any, float | None]:
        """The document and when it was written (None, None when there is none)."""
        row = self.sql.row("SELECT value, updated_at FROM kv WHERE key=?", (key,))
        return (loads_or(row[0], None), row[1]) if row else (None, None)
