"""Provides Outcomes: what happened to the conversations the bot served, for analytics.

One row per event: ``answered`` (value: seconds from the customer's message to the bot's reply),
``handoff`` (detail: its category), ``resolved_by_bot``, ``reopened``, ``csat`` (value: the
rating), ``shadow`` (a shadow crew's answer; detail: its text, shortened), ``draft`` and
``reminder`` (the watchdog reminded the team of a hand-off; detail: its category).
"""

from __future__ import annotations

from typing import Any

from state.sql import Sql, marks

KINDS = ("answered", "handoff", "resolved_by_bot", "reopened", "csat", "shadow", "draft", "reminder")


class Outcomes:
    __slots__ = ("sql",)

    def __init__(self, sql: Sql) -> None:
        self.sql = sql

    def record(self, kind: str, *, account_id: int, conversation_id: int, crew: str, rule: str, now: float,
               value: float | None = None, detail: str = "") -> None:
        self.sql.execute(
            "INSERT INTO outcomes(at, account_id, conversation_id, crew, rule, kind, value, detail) "
            "VALUES (?,?,?,?,?,?,?,?)", (now, account_id, conversation_id, crew, rule, kind, value, detail))

    def erase(self, account_id: int, conversation_id: int) -> int:
        """Blanks the texts events carry (a shadow crew's answer); kinds, values and counts stay."""
        return self.sql.execute(
            "UPDATE outcomes SET detail='' WHERE account_id=? AND conversation_id=? AND kind='shadow'",
            (account_id, conversation_id))

    def prune(self, before: float, limit: int) -> int:
        """Deletes up to ``limit`` events recorded before ``before``, oldest first."""
        return self.sql.execute(
            "DELETE FROM outcomes WHERE id IN (SELECT id FROM outcomes WHERE at<? ORDER BY at LIMIT ?)",
            (before, limit))

    def oldest(self) -> float | None:
        return self.sql.scalar("SELECT min(at) FROM outcomes")

    def budget_figures(self, account_id: int, conversation_id: int, contact_id: int | None, hour_ago: float,
                       minute_ago: float) -> tuple[int, int, int]:
        """(bot answers in the conversation in the last hour, bot answers in it ever, messages the
        contact sent in the last minute across its conversations), in one statement."""
        row = self.sql.row(
            "SELECT (SELECT count(*) FROM outcomes WHERE account_id=? AND conversation_id=? AND kind='answered' "
            "AND at>=?), (SELECT count(*) FROM outcomes WHERE account_id=? AND conversation_id=? "
            "AND kind='answered'), (SELECT count(*) FROM messages m JOIN conversations c "
            "ON c.account_id=m.account_id AND c.conversation_id=m.conversation_id WHERE c.account_id=? "
            "AND c.contact_id=? AND m.role='customer' AND m.created_at>=?)",
            (account_id, conversation_id, hour_ago, account_id, conversation_id, account_id, contact_id,
             minute_ago))
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2])

    def last_of(self, account_id: int, conversation_id: int, kinds: tuple[str, ...]) -> str | None:
        """The latest of ``kinds`` recorded for the conversation."""
        return self.sql.scalar(
            f"SELECT kind FROM outcomes WHERE account_id=? AND conversation_id=? AND kind IN ({marks(len(kinds))}) "
            "ORDER BY id DESC LIMIT 1", (account_id, conversation_id, *kinds))

    def seen(self, account_id: int, conversation_id: int, kind: str, detail: str) -> bool:
        return self.sql.scalar(
            "SELECT 1 FROM outcomes WHERE account_id=? AND conversation_id=? AND kind=? AND detail=? LIMIT 1",
            (account_id, conversation_id, kind, detail)) is not None

    def counts(self, since: float) -> list[dict[str, Any]]:
        """(crew, rule, kind, detail, count, conversations, sum, min) per group since ``since``."""
        return self.sql.all(
            "SELECT crew, rule, kind, CASE WHEN kind='handoff' THEN detail ELSE '' END AS detail, count(*) AS n, "
            "count(DISTINCT account_id || ':' || conversation_id) AS conversations, sum(value) AS total "
            "FROM outcomes WHERE at>=? GROUP BY crew, rule, kind, CASE WHEN kind='handoff' THEN detail ELSE '' END",
            (since,))

    def values(self, kind: str, since: float, limit: int = 100_000) -> list[tuple[str, str, float]]:
        """(crew, rule, value) of ``kind`` events since ``since`` (latencies, ratings)."""
        return [(r["crew"], r["rule"], r["value"]) for r in self.sql.all(
            "SELECT crew, rule, value FROM outcomes WHERE kind=? AND at>=? AND value IS NOT NULL "
            "ORDER BY at DESC LIMIT ?", (kind, since, limit))]

    def recent(self, kind: str, limit: int = 100) -> list[dict[str, Any]]:
        return self.sql.all("SELECT * FROM outcomes WHERE kind=? ORDER BY id DESC LIMIT ?", (kind, limit))

    def served(self, since: float) -> list[dict[str, Any]]:
        """Conversations the bot served (answered, drafted or handed off) per (crew, rule), and
        one row with crew and rule NULL for all of them (a conversation can meet several crews)."""
        key = "account_id || ':' || conversation_id"
        return self.sql.all(
            f"SELECT crew, rule, count(DISTINCT {key}) AS conversations FROM outcomes "
            "WHERE at>=? AND kind IN ('answered', 'draft', 'handoff') GROUP BY crew, rule "
            f"UNION ALL SELECT NULL, NULL, count(DISTINCT {key}) FROM outcomes "
            "WHERE at>=? AND kind IN ('answered', 'draft', 'handoff')", (since, since))
