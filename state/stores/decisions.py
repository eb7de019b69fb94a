"""Provides Decisions: routing decisions and crew attempts, the record of who answered and how it went."""

from __future__ import annotations

from collections.abc import Sequence

from state.records import CrewAttempt, RoutingDecisionRow
from state.sql import Sql, marks


class Decisions:
    __slots__ = ("sql",)

    def __init__(self, sql: Sql) -> None:
        self.sql = sql

    def record(self, *, job_id: int | None, account_id: int, conversation_id: int, crew: str, source: str,
               reason: str, confidence: float | None, now: float, rule: str = "", mode: str = "auto") -> None:
        self.sql.execute(
            "INSERT INTO routing_decisions(job_id, account_id, conversation_id, crew, source, reason, confidence, "
            "decided_at, rule, mode) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (job_id, account_id, conversation_id, crew, source, reason, confidence, now, rule, mode))

    def record_attempt(self, *, job_id: int, request_id: str, crew: str, backend: str, attempt: int,
                       started_at: float, duration: float | None, outcome: str, status_code: int | None,
                       error: str) -> None:
        self.sql.execute(
            "INSERT INTO crew_attempts(job_id, request_id, crew, backend, attempt, started_at, duration, outcome, "
            "status_code, error) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (job_id, request_id, crew, backend, attempt, started_at, duration, outcome, status_code, error))

    # -- erasure ----------------------------------------------------------------------------
    def erase(self, account_id: int, conversation_id: int) -> int:
        """Blanks the decisions' reasons (a decision engine's reason may quote the message)."""
        return self.sql.execute("UPDATE routing_decisions SET reason='' WHERE account_id=? AND conversation_id=?",
                                (account_id, conversation_id))

    # -- retention --------------------------------------------------------------------------
    def prune(self, before: float, limit: int) -> int:
        """Deletes up to ``limit`` routing decisions made before ``before``, except those of a
        dead letter or of open work (the console shows them with it)."""
        return self.sql.execute(
            "DELETE FROM routing_decisions WHERE id IN (SELECT d.id FROM routing_decisions d WHERE d.decided_at<? "
            "AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id=d.job_id AND j.state IN "
            "('pending','in_flight','waiting','dead')) ORDER BY d.decided_at LIMIT ?)", (before, limit))

    def oldest(self) -> float | None:
        return self.sql.scalar("SELECT min(decided_at) FROM routing_decisions")

    # -- reads ------------------------------------------------------------------------------
    def recent(self, limit: int = 200, offset: int = 0) -> list[RoutingDecisionRow]:
        return [RoutingDecisionRow(**r) for r in self.sql.all(
            "SELECT * FROM routing_decisions ORDER BY decided_at DESC, id DESC LIMIT ? OFFSET ?", (limit, offset))]

    def for_conversation(self, account_id: int, conversation_id: int, limit: int = 200) -> list[RoutingDecisionRow]:
        return [RoutingDecisionRow(**r) for r in self.sql.all(
            "SELECT * FROM routing_decisions WHERE account_id=? AND conversation_id=? ORDER BY id DESC LIMIT ?",
            (account_id, conversation_id, limit))]

    def counts(self, since: float) -> list[tuple[str, str, int]]:
        """(crew, source, count) of decisions made since ``since``."""
        return [(r["crew"], r["source"], r["n"]) for r in self.sql.all(
            "SELECT crew, source, count(*) AS n FROM routing_decisions WHERE decided_at>=? "
            "GROUP BY crew, source ORDER BY n DESC", (since,))]

    def attempts_for_jobs(self, job_ids: Sequence[int]) -> list[CrewAttempt]:
        if not job_ids:
            return []
        return [CrewAttempt(**r) for r in self.sql.all(
            f"SELECT * FROM crew_attempts WHERE job_id IN ({marks(len(job_ids))}) ORDER BY id", list(job_ids))]

    def crew_latency_per_minute(self, since: float) -> list[tuple[int, float, int]]:
        """(minute epoch, mean seconds, requests) of crew attempts since ``since``."""
        bucket = self.sql.dialect.minute_bucket("started_at")
        return [(int(r["minute"]), r["mean"], r["n"]) for r in self.sql.all(
            f"SELECT {bucket} AS minute, avg(duration) AS mean, count(*) AS n FROM crew_attempts "
            "WHERE started_at>=? AND duration IS NOT NULL GROUP BY minute ORDER BY minute", (since,))]

    def crew_outcomes(self, since: float) -> dict[str, int]:
        return {r["outcome"]: r["n"] for r in self.sql.all(
            "SELECT outcome, count(*) AS n FROM crew_attempts WHERE started_at>=? GROUP BY outcome", (since,))}
