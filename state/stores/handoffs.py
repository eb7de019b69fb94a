"""Provides Handoffs: every hand-off to a human, and what the reminder watchdog did about it."""

from __future__ import annotations

from state.records import Handoff
from state.sql import Sql


class Handoffs:
    __slots__ = ("sql",)

    def __init__(self, sql: Sql) -> None:
        self.sql = sql

    def record(self, *, account_id: int, conversation_id: int, job_id: int | None, category: str, reason: str,
               crew: str, rule: str, team_id: int | None, now: float, waiting_since: float | None = None) -> None:
        """``waiting_since``: when the team's reminder clock starts (after hours: the next opening)."""
        self.sql.execute(
            "INSERT INTO handoffs(account_id, conversation_id, job_id, category, reason, crew, rule, team_id, at, "
            "waiting_since) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (account_id, conversation_id, job_id, category, reason, crew, rule, team_id, now,
             now if waiting_since is None else max(now, waiting_since)))

    def human_replied(self, account_id: int, conversation_id: int, now: float) -> int:
        """A human agent wrote in the conversation: its open hand-offs need no reminder."""
        return self.sql.execute(
            "UPDATE handoffs SET human_replied_at=? WHERE account_id=? AND conversation_id=? "
            "AND human_replied_at IS NULL", (now, account_id, conversation_id))

    def due_reminders(self, before: float, limit: int = 50) -> list[Handoff]:
        """Hand-offs waiting since before ``before`` that no human has answered and nobody reminded yet."""
        return [Handoff(**r) for r in self.sql.all(
            "SELECT * FROM handoffs WHERE human_replied_at IS NULL AND reminded_at IS NULL AND waiting_since<? "
            "ORDER BY waiting_since LIMIT ?", (before, limit))]

    def next_waiting_since(self) -> float | None:
        """The oldest clock among hand-offs still waiting for a human (the watchdog's next wake-up)."""
        return self.sql.scalar(
            "SELECT min(waiting_since) FROM handoffs WHERE human_replied_at IS NULL AND reminded_at IS NULL")

    def waiting(self) -> int:
        return int(self.sql.scalar(
            "SELECT count(*) FROM handoffs WHERE human_replied_at IS NULL AND reminded_at IS NULL") or 0)

    def mark_reminded(self, handoff_id: int, now: float, *, escalated: bool) -> bool:
        """Claims the reminder (once: a second watchdog finds it taken)."""
        return self.sql.execute(
            "UPDATE handoffs SET reminded_at=?, escalated_at=? WHERE id=? AND reminded_at IS NULL",
            (now, now if escalated else None, handoff_id)) == 1

    def erase(self, account_id: int, conversation_id: int) -> int:
        """Blanks the hand-offs' reasons (a crew's words); categories and clocks stay."""
        return self.sql.execute("UPDATE handoffs SET reason='' WHERE account_id=? AND conversation_id=?",
                                (account_id, conversation_id))

    def prune(self, before: float, limit: int) -> int:
        """Deletes up to ``limit`` hand-offs made before ``before`` that a human answered or the
        watchdog reminded the team of; one still waiting for a human is never deleted."""
        return self.sql.execute(
            "DELETE FROM handoffs WHERE id IN (SELECT id FROM handoffs WHERE at<? AND (human_replied_at IS NOT NULL "
            "OR reminded_at IS NOT NULL) ORDER BY at LIMIT ?)", (before, limit))

    def oldest(self) -> float | None:
        return self.sql.scalar("SELECT min(at) FROM handoffs")

    def for_conversation(self, account_id: int, conversation_id: int, limit: int = 50) -> list[Handoff]:
        return [Handoff(**r) for r in self.sql.all(
            "SELECT * FROM handoffs WHERE account_id=? AND conversation_id=? ORDER BY id DESC LIMIT ?",
            (account_id, conversation_id, limit))]
