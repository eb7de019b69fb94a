"""Provides Effects: one row per crew action applied in Chatwoot (``actions_applied``).

The row exists before the Chatwoot call, so after a crash or a dropped connection "maybe sent"
can be told from "never sent", and a message is never posted twice for one crew answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from state.records import ActionRecord
from state.sql import Sql, marks


class Effects:
    __slots__ = ("sql",)

    def __init__(self, sql: Sql) -> None:
        self.sql = sql

    def get(self, job_id: int, idx: int) -> ActionRecord | None:
        row = self.sql.one("SELECT * FROM actions_applied WHERE job_id=? AND idx=?", (job_id, idx))
        return ActionRecord(**row) if row else None

    def begin(self, job_id: int, idx: int, kind: str, account_id: int, conversation_id: int, content_hash: str,
              now: float) -> None:
        """The intent row, committed before the Chatwoot call (a retry refreshes its start)."""
        self.sql.execute(
            "INSERT INTO actions_applied(job_id, idx, kind, account_id, conversation_id, content_hash, state, "
            "started_at) VALUES (?,?,?,?,?,?,'started',?) ON CONFLICT(job_id, idx) DO UPDATE SET "
            "started_at=excluded.started_at", (job_id, idx, kind, account_id, conversation_id, content_hash, now))

    def forget(self, job_id: int, idx: int) -> None:
        """Drops a step that certainly did not happen (the peer refused it)."""
        self.sql.execute("DELETE FROM actions_applied WHERE job_id=? AND idx=? AND state='started'", (job_id, idx))

    def finish(self, job_id: int, idx: int, *, chatwoot_message_id: int | None, detail: str, now: float) -> None:
        self.sql.execute(
            "UPDATE actions_applied SET state='done', chatwoot_message_id=?, detail=?, finished_at=? "
            "WHERE job_id=? AND idx=?", (chatwoot_message_id, detail, now, job_id, idx))

    def find_own(self, account_id: int, conversation_id: int, content_hash: str, since: float) -> bool:
        """Whether the sidecar posted (or is posting) a message with this content lately."""
        return self.sql.scalar(
            "SELECT 1 FROM actions_applied WHERE account_id=? AND conversation_id=? AND content_hash=? "
            "AND started_at>=? LIMIT 1", (account_id, conversation_id, content_hash, since)) is not None

    def erase(self, account_id: int, conversation_id: int) -> int:
        """Forgets the digests of what was posted (a digest of a short text gives the text away)."""
        return self.sql.execute("UPDATE actions_applied SET content_hash='', detail='' "
                                "WHERE account_id=? AND conversation_id=?",
                                (account_id, conversation_id))

    def for_jobs(self, job_ids: Sequence[int]) -> list[dict[str, Any]]:
        if not job_ids:
            return []
        return self.sql.all(
            f"SELECT * FROM actions_applied WHERE job_id IN ({marks(len(job_ids))}) ORDER BY started_at",
            list(job_ids))
