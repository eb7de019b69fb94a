"""Provides MetricValues: counters and histograms that survive restarts and add up across processes.

Every value is a sum: a counter is one row (part ``""``), a histogram one row per bucket plus
``sum`` and ``count``. Each process adds its own increments (``add``), in one statement per row
(``value = value + ?``), so several sidecar processes, or replicas on one PostgreSQL database,
never overwrite each other's figures.
"""

from __future__ import annotations

from collections.abc import Sequence

from state.sql import Sql

MetricRow = tuple[str, str, str, str, float]
"""(name, labels as sorted JSON, kind, part, value)."""


class MetricValues:
    __slots__ = ("sql",)

    def __init__(self, sql: Sql) -> None:
        self.sql = sql

    def add(self, rows: Sequence[MetricRow], now: float) -> None:
        """Adds increments: (name, labels, kind, part, delta)."""
        if rows:
            self.sql.many(
                "INSERT INTO metric_values(name, labels, kind, part, value, updated_at) VALUES (?,?,?,?,?,?) "
                "ON CONFLICT(name, labels, part) DO UPDATE SET value=metric_values.value+excluded.value, "
                "updated_at=excluded.updated_at",
                # In key order: two processes adding to the same rows lock them in the same order
                # (PostgreSQL), so they never deadlock.
                [(name, labels, kind, part, delta, now)
                 for name, labels, kind, part, delta in sorted(rows, key=lambda r: (r[0], r[1], r[3]))])

    def prune(self, before: float, limit: int) -> int:
        """Drops up to ``limit`` series (every part of one name and label set) that no process has
        added to since ``before``; a histogram goes whole, never bucket by bucket."""
        return self.sql.execute(
            "DELETE FROM metric_values WHERE (name, labels) IN (SELECT name, labels FROM metric_values "
            "GROUP BY name, labels HAVING max(updated_at)<? LIMIT ?)", (before, limit))

    def oldest(self) -> float | None:
        return self.sql.scalar("SELECT min(updated_at) FROM metric_values")

    def totals(self) -> list[MetricRow]:
        return [(r["name"], r["labels"], r["kind"], r["part"], r["value"]) for r in self.sql.all(
            "SELECT name, labels, kind, part, value FROM metric_values ORDER BY name, labels, part")]
