"""Provides the read-only queries shared by the sidecar's status endpoints and the console.

Every query is short, indexed and paged, so a reader never holds the database for long
(a long read transaction would starve WAL checkpoints and grow the -wal file).
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from state.models import (
    AuditEntry,
    ConversationRow,
    CrewAttempt,
    DeadLetter,
    Delivery,
    Job,
    JournalBacklog,
    MessageRow,
    OperatorAction,
    QueueStats,
    RoutingDecisionRow,
)

_OWNER_FILTERS = ("bot", "human", "paused")


class Reads:
    """Read queries; mixed into Store (works on read-only and writer connections)."""

    conn: sqlite3.Connection

    def _all(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute(sql, params).fetchall()]

    def get_kv(self, key: str) -> Any:
        row = self.conn.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def kv_with_age(self, key: str) -> tuple[Any, float | None]:
        row = self.conn.execute("SELECT value, updated_at FROM kv WHERE key=?", (key,)).fetchone()
        return (json.loads(row[0]), row[1]) if row else (None, None)

    def load_metrics(self) -> list[tuple[str, str, str, Any]]:
        return [
            (r["name"], r["labels"], r["kind"], json.loads(r["value"]))
            for r in self._all("SELECT name, labels, kind, value FROM metrics ORDER BY name, labels")
        ]

    # -- queue --------------------------------------------------------------------------
    def queue_stats(self, now: float | None = None) -> QueueStats:
        now = time.time() if now is None else now
        counts = {r["state"]: r["n"] for r in self._all(
            "SELECT state, count(*) AS n FROM jobs WHERE state IN ('pending','in_flight','waiting','dead') "
            "GROUP BY state"
        )}
        oldest = self.conn.execute(
            "SELECT min(first_message_at) FROM jobs WHERE state IN ('pending','in_flight','waiting')"
        ).fetchone()[0]
        return QueueStats(
            pending=counts.get("pending", 0),
            in_flight=counts.get("in_flight", 0),
            waiting=counts.get("waiting", 0),
            dead=counts.get("dead", 0),
            oldest_pending_age=(now - oldest) if oldest is not None else None,
        )

    def next_due_at(self) -> float | None:
        """When the next job could be claimed, ignoring jobs blocked behind an older job of
        their conversation (those become claimable when that job finishes)."""
        row = self.conn.execute(
            """
            SELECT min(j.run_at) FROM jobs j
            WHERE j.state IN ('pending','waiting')
              AND NOT EXISTS (
                SELECT 1 FROM jobs o WHERE o.account_id=j.account_id
                  AND o.conversation_id=j.conversation_id AND o.id<j.id
                  AND o.state IN ('pending','in_flight','waiting'))
            """
        ).fetchone()
        return row[0] if row else None

    def jobs_for_conversation(self, account_id: int, conversation_id: int, limit: int = 200) -> list[Job]:
        return [Job.from_row(r) for r in self._all(
            "SELECT * FROM jobs WHERE account_id=? AND conversation_id=? ORDER BY id DESC LIMIT ?",
            (account_id, conversation_id, limit),
        )]

    def dead_letters(self, limit: int = 200, offset: int = 0) -> list[DeadLetter]:
        jobs = [Job.from_row(r) for r in self._all(
            "SELECT * FROM jobs WHERE state='dead' ORDER BY finished_at DESC, id DESC LIMIT ? OFFSET ?",
            (limit, offset),
        )]
        return [DeadLetter(job=j, reason=j.last_error) for j in jobs]

    def dead_letter(self, job_id: int) -> DeadLetter | None:
        rows = self._all("SELECT * FROM jobs WHERE id=?", (job_id,))
        if not rows:
            return None
        job = Job.from_row(rows[0])
        msgs = self.messages_for_job(job)
        return DeadLetter(job=job, reason=job.last_error, messages=tuple(msgs))

    def messages_for_job(self, job: Job) -> list[MessageRow]:
        if not job.message_ids:
            return []
        marks = ", ".join("?" * len(job.message_ids))
        return [MessageRow.from_row(r) for r in self._all(
            f"SELECT * FROM messages WHERE message_id IN ({marks}) ORDER BY id", list(job.message_ids)
        )]

    # -- conversations ------------------------------------------------------------------
    def get_conversation_row(self, account_id: int, conversation_id: int) -> ConversationRow | None:
        rows = self._all(
            "SELECT * FROM conversations WHERE account_id=? AND conversation_id=?",
            (account_id, conversation_id),
        )
        return ConversationRow.from_row(rows[0]) if rows else None

    def list_conversations(
        self,
        *,
        channel: str | None = None,
        crew: str | None = None,
        owner: str | None = None,
        text: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[ConversationRow]:
        """Most recently active first; every filter is optional."""
        where, params = [], []  # type: ignore[var-annotated]
        if channel:
            where.append("channel=?")
            params.append(channel)
        if crew:
            where.append("crew=?")
            params.append(crew)
        if owner in _OWNER_FILTERS:
            where.append("owner=?")
            params.append(owner)
        if text:
            # Free text looks at what an operator can see in the row.
            like = f"%{text.replace('%', '').replace('_', '')}%"
            where.append("(contact_name LIKE ? OR inbox_name LIKE ? OR last_message_preview LIKE ? "
                         "OR CAST(conversation_id AS TEXT)=?)")
            params.extend([like, like, like, text.strip()])
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._all(
            f"SELECT * FROM conversations {clause} ORDER BY last_message_at DESC LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return [ConversationRow.from_row(r) for r in rows]

    def count_conversations(self) -> int:
        return self.conn.execute("SELECT count(*) FROM conversations").fetchone()[0]

    def conversation_messages(
        self, account_id: int, conversation_id: int, limit: int = 500
    ) -> list[MessageRow]:
        rows = self._all(
            "SELECT * FROM messages WHERE account_id=? AND conversation_id=? ORDER BY id DESC LIMIT ?",
            (account_id, conversation_id, limit),
        )
        return [MessageRow.from_row(r) for r in reversed(rows)]

    def conversation_decisions(self, account_id: int, conversation_id: int, limit: int = 200) -> list[RoutingDecisionRow]:
        return [RoutingDecisionRow(**r) for r in self._all(
            "SELECT * FROM routing_decisions WHERE account_id=? AND conversation_id=? ORDER BY id DESC LIMIT ?",
            (account_id, conversation_id, limit),
        )]

    def attempts_for_jobs(self, job_ids: list[int]) -> list[CrewAttempt]:
        if not job_ids:
            return []
        marks = ", ".join("?" * len(job_ids))
        return [CrewAttempt(**r) for r in self._all(
            f"SELECT * FROM crew_attempts WHERE job_id IN ({marks}) ORDER BY id", job_ids
        )]

    def actions_for_jobs(self, job_ids: list[int]) -> list[dict[str, Any]]:
        if not job_ids:
            return []
        marks = ", ".join("?" * len(job_ids))
        return self._all(f"SELECT * FROM actions_applied WHERE job_id IN ({marks}) ORDER BY started_at", job_ids)

    # -- routing -----------------------------------------------------------------------
    def recent_decisions(self, limit: int = 200, offset: int = 0) -> list[RoutingDecisionRow]:
        return [RoutingDecisionRow(**r) for r in self._all(
            "SELECT * FROM routing_decisions ORDER BY decided_at DESC, id DESC LIMIT ? OFFSET ?",
            (limit, offset),
        )]

    def decision_counts(self, since: float) -> list[tuple[str, str, int]]:
        """(crew, source, count) of decisions made since ``since``."""
        return [(r["crew"], r["source"], r["n"]) for r in self._all(
            "SELECT crew, source, count(*) AS n FROM routing_decisions WHERE decided_at>=? "
            "GROUP BY crew, source ORDER BY n DESC",
            (since,),
        )]

    # -- intake figures ------------------------------------------------------------------
    def delivery_counts(self) -> dict[str, int]:
        return {r["outcome"]: r["n"] for r in self._all(
            "SELECT outcome, count(*) AS n FROM deliveries GROUP BY outcome"
        )}

    def journal_backlog(self, now: float | None = None) -> JournalBacklog:
        """Deliveries acknowledged but not applied yet, and how long the oldest has waited.

        Two queries on purpose: the count reads only the partial index, and the oldest is the
        first pending id (applied in id order). ``min(received_at)`` would visit every pending
        row: 0.4 s at a 400,000-row backlog, a read transaction long enough to hold back
        checkpoints (the WAL grew to 220 MB in the bench's soak with the console polling).
        """
        count = self.conn.execute("SELECT count(*) FROM deliveries WHERE outcome='pending'").fetchone()[0]
        oldest = self.conn.execute(
            "SELECT received_at FROM deliveries WHERE outcome='pending' ORDER BY id LIMIT 1").fetchone()
        now = time.time() if now is None else now
        return JournalBacklog(count, max(0.0, now - oldest[0]) if oldest else None)

    def delivery(self, delivery_id: str) -> Delivery | None:
        """The latest delivery stored under ``delivery_id`` (its outcome, once applied)."""
        row = self.conn.execute(
            "SELECT id, delivery_id, event, outcome, reason, received_at, account_id, conversation_id, "
            "message_id FROM deliveries WHERE delivery_id=? ORDER BY id DESC LIMIT 1",
            (delivery_id,),
        ).fetchone()
        return Delivery(*row) if row else None

    def last_delivery_at(self) -> float | None:
        return self.conn.execute("SELECT max(received_at) FROM deliveries").fetchone()[0]

    def deliveries_per_minute(self, since: float) -> list[tuple[int, int]]:
        """(minute epoch, count) buckets of deliveries (any outcome) since ``since``."""
        return [(r["minute"], r["n"]) for r in self._all(
            "SELECT CAST(received_at/60 AS INTEGER)*60 AS minute, count(*) AS n FROM deliveries "
            "WHERE received_at>=? GROUP BY minute ORDER BY minute",
            (since,),
        )]

    def crew_latency_per_minute(self, since: float) -> list[tuple[int, float, int]]:
        """(minute epoch, mean seconds, requests) of crew attempts since ``since``."""
        return [(r["minute"], r["mean"], r["n"]) for r in self._all(
            "SELECT CAST(started_at/60 AS INTEGER)*60 AS minute, avg(duration) AS mean, count(*) AS n "
            "FROM crew_attempts WHERE started_at>=? AND duration IS NOT NULL GROUP BY minute ORDER BY minute",
            (since,),
        )]

    def crew_outcomes(self, since: float) -> dict[str, int]:
        return {r["outcome"]: r["n"] for r in self._all(
            "SELECT outcome, count(*) AS n FROM crew_attempts WHERE started_at>=? GROUP BY outcome",
            (since,),
        )}

    # -- audit ------------------------------------------------------------------------
    def config_audit(self, limit: int = 100) -> list[AuditEntry]:
        return [
            AuditEntry(id=r["id"], at=r["at"], actor=r["actor"], keys=tuple(json.loads(r["keys"])),
                       changes=json.loads(r["changes"]))
            for r in self._all("SELECT * FROM config_audit ORDER BY id DESC LIMIT ?", (limit,))
        ]

    def operator_actions(self, limit: int = 100) -> list[OperatorAction]:
        return [OperatorAction(**r) for r in self._all(
            "SELECT * FROM operator_actions ORDER BY id DESC LIMIT ?", (limit,)
        )]

    # -- console helpers ----------------------------------------------------------------
    def data_version(self) -> int:
        """A number that changes whenever another connection commits (cheap change check)."""
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    def conversation_facets(self, limit: int = 100) -> tuple[list[str], list[str]]:
        """Distinct channels and crews, for filter pickers (walks the two covering indexes)."""
        channels = [r[0] for r in self.conn.execute(
            "SELECT DISTINCT channel FROM conversations WHERE channel<>'' ORDER BY channel LIMIT ?", (limit,)
        ).fetchall()]
        crews = [r[0] for r in self.conn.execute(
            "SELECT DISTINCT crew FROM conversations WHERE crew<>'' ORDER BY crew LIMIT ?", (limit,)
        ).fetchall()]
        return channels, crews
