"""Provides Audit: who changed the configuration and what operators did, with when."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from state.records import AuditEntry, OperatorAction
from state.sql import Sql, dumps, loads_or


class Audit:
    __slots__ = ("sql",)

    def __init__(self, sql: Sql) -> None:
        self.sql = sql

    def config_change(self, actor: str, keys: Sequence[str], changes: dict[str, Any], now: float) -> None:
        """A config change; ``changes`` must already have its secrets masked."""
        self.sql.execute("INSERT INTO config_audit(at, actor, keys, changes) VALUES (?,?,?,?)",
                         (now, actor, dumps(list(keys)), dumps(changes)))

    def operator_action(self, actor: str, action: str, target: str, detail: str, now: float) -> None:
        self.sql.execute("INSERT INTO operator_actions(at, actor, action, target, detail) VALUES (?,?,?,?,?)",
                         (now, actor, action, target, detail))

    def prune(self, before: float, limit: int) -> int:
        """Deletes up to ``limit`` config changes and up to ``limit`` operator actions older than
        ``before`` (ids follow time, so the oldest come first)."""
        deleted = 0
        for table in ("config_audit", "operator_actions"):
            deleted += self.sql.execute(
                f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE at<? ORDER BY id LIMIT ?)",
                (before, limit))
        return deleted

    def oldest(self) -> float | None:
        times = [self.sql.scalar(f"SELECT at FROM {table} ORDER BY id LIMIT 1")
                 for table in ("config_audit", "operator_actions")]
        return min((t for t in times if t is not None), default=None)

    def config_changes(self, limit: int = 100) -> list[AuditEntry]:
        return [AuditEntry(id=r["id"], at=r["at"], actor=r["actor"], keys=tuple(loads_or(r["keys"], [])),
                           changes=loads_or(r["changes"], {}))
                for r in self.sql.all("SELECT * FROM config_audit ORDER BY id DESC LIMIT ?", (limit,))]

    def operator_actions(self, limit: int = 100) -> list[OperatorAction]:
        return [OperatorAction(**r) for r in self.sql.all(
            "SELECT * FROM operator_actions ORDER BY id DESC LIMIT ?", (limit,))]
