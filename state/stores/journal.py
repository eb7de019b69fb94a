"""Provides Journal: the deliveries table, every Chatwoot webhook the sidecar acknowledged.

A delivery is journaled (one INSERT) before Chatwoot gets its 2xx and applied to conversation
state afterwards, in arrival order. Both UNIQUE keys (delivery id, and ``dedup_key`` = the same
message under another delivery id) make a repeated delivery a no-op.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from state.records import Delivery, JournalBacklog, PendingDelivery
from state.sql import Sql, loads_or, marks
from state.vocabulary import UNAPPLIED

CONTACT_EVENTS = ("contact_created", "contact_updated")
"""Chatwoot's events about a contact itself (no conversation; the payload is the contact)."""
APPLIER_LOCK = 0x6A726E6C  # "jrnl": the advisory lock of the journal applier (PostgreSQL)


class Journal:
    __slots__ = ("sql",)

    def __init__(self, sql: Sql) -> None:
        self.sql = sql

    # -- intake -----------------------------------------------------------------------------
    def insert(self, *, delivery_id: str | None, dedup_key: str | None, event: str, received_at: float,
               account_id: int | None, conversation_id: int | None, message_id: int | None, body: str,
               outcome: str = UNAPPLIED, reason: str = "") -> bool:
        """Stores a delivery; False when its delivery id or dedup key was seen before."""
        return self.sql.execute(
            "INSERT INTO deliveries(delivery_id, dedup_key, event, outcome, reason, received_at, account_id, "
            "conversation_id, message_id, body) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
            (delivery_id, dedup_key, event, outcome, reason, received_at, account_id, conversation_id,
             message_id, body),
        ) == 1

    # -- applier ----------------------------------------------------------------------------
    def take_applier_turn(self) -> None:
        """Makes this transaction the only one applying the journal until it ends.

        Deliveries are applied in arrival order by one applier at a time. SQLite's single writer
        gives that for free; on PostgreSQL every process runs an applier, so the first statement
        of the applier's transaction waits for an advisory lock held to its commit."""
        if self.sql.dialect.skip_locked:
            self.sql.execute("SELECT pg_advisory_xact_lock(?)", (APPLIER_LOCK,))

    def pending(self, limit: int) -> list[PendingDelivery]:
        """Journaled deliveries not applied yet, oldest first (arrival order is apply order)."""
        return [PendingDelivery(r["id"], r["delivery_id"], r["received_at"], r["body"]) for r in self.sql.all(
            "SELECT id, delivery_id, received_at, body FROM deliveries WHERE outcome='pending' ORDER BY id LIMIT ?",
            (limit,))]

    def set_outcomes(self, outcomes: Sequence[tuple[str, str, int]]) -> None:
        """(outcome, reason, row id) for each applied delivery."""
        if outcomes:
            self.sql.many("UPDATE deliveries SET outcome=?, reason=? WHERE id=?", outcomes)

    def set_outcome(self, row_id: int, outcome: str, reason: str) -> None:
        self.sql.execute("UPDATE deliveries SET outcome=?, reason=? WHERE id=?", (outcome, reason, row_id))

    # -- reads ------------------------------------------------------------------------------
    def backlog(self, now: float | None = None) -> JournalBacklog:
        """Deliveries acknowledged but not applied yet, and how long the oldest has waited.

        Two queries on purpose: the count reads only the partial index, and the oldest is the
        first pending id (applied in id order). ``min(received_at)`` would visit every pending
        row: 0.4 s at a 400,000-row backlog, a read long enough to hold back checkpoints.
        """
        count = self.sql.scalar("SELECT count(*) FROM deliveries WHERE outcome='pending'")
        oldest = self.sql.scalar("SELECT received_at FROM deliveries WHERE outcome='pending' ORDER BY id LIMIT 1")
        now = time.time() if now is None else now
        return JournalBacklog(int(count or 0), max(0.0, now - oldest) if oldest is not None else None)

    def oldest_unapplied_at(self) -> float | None:
        """When the oldest delivery not applied yet was received (None when all are applied)."""
        return self.sql.scalar("SELECT received_at FROM deliveries WHERE outcome='pending' ORDER BY id LIMIT 1")

    def get(self, delivery_id: str) -> Delivery | None:
        """The latest delivery stored under ``delivery_id`` (its outcome, once applied)."""
        row = self.sql.row(
            "SELECT id, delivery_id, event, outcome, reason, received_at, account_id, conversation_id, message_id "
            "FROM deliveries WHERE delivery_id=? ORDER BY id DESC LIMIT 1", (delivery_id,))
        return Delivery(*row) if row else None

    def last_received_at(self) -> float | None:
        return self.sql.scalar("SELECT max(received_at) FROM deliveries")

    def counts(self) -> dict[str, int]:
        return {r["outcome"]: r["n"] for r in self.sql.all(
            "SELECT outcome, count(*) AS n FROM deliveries GROUP BY outcome")}

    # -- erasure ----------------------------------------------------------------------------
    def erase(self, account_id: int, conversation_id: int) -> int:
        """Blanks the raw payloads of a conversation's deliveries. One not applied yet is closed
        as ``ignored`` (its content is gone), so it is never applied; outcomes and counts stay."""
        return self.sql.execute(
            "UPDATE deliveries SET body='{}', reason=CASE WHEN outcome=? THEN 'erased on request' ELSE reason END, "
            "outcome=CASE WHEN outcome=? THEN 'ignored' ELSE outcome END WHERE account_id=? AND conversation_id=?",
            (UNAPPLIED, UNAPPLIED, account_id, conversation_id))

    def erase_contact_events(self, contact_id: int, account_id: int | None = None) -> int:
        """Blanks the payloads of the contact's own events (``contact_created``, ``contact_updated``:
        no conversation; the contact is the payload's ``id``)."""
        rows = self.sql.all(
            f"SELECT id, body FROM deliveries WHERE conversation_id IS NULL AND event IN ({marks(len(CONTACT_EVENTS))}) "
            "AND body LIKE ?", (*CONTACT_EVENTS, f"%{contact_id}%"))
        ids = [r["id"] for r in rows if _is_contact(loads_or(r["body"], None), contact_id, account_id)]
        for row_id in ids:
            self.sql.execute("UPDATE deliveries SET body='{}' WHERE id=?", (row_id,))
        return len(ids)

    # -- retention --------------------------------------------------------------------------
    def prune(self, before: float, limit: int) -> int:
        """Deletes up to ``limit`` applied deliveries received before ``before``, oldest first.
        A delivery not applied yet is never deleted (nothing accepted is ever lost)."""
        return self.sql.execute(
            "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries WHERE received_at<? AND outcome<>? "
            "ORDER BY received_at LIMIT ?)", (before, UNAPPLIED, limit))

    def oldest(self) -> float | None:
        return self.sql.scalar("SELECT min(received_at) FROM deliveries")

    def per_minute(self, since: float) -> list[tuple[int, int]]:
        """(minute epoch, count) buckets of deliveries (any outcome) since ``since``."""
        bucket = self.sql.dialect.minute_bucket("received_at")
        return [(int(r["minute"]), r["n"]) for r in self.sql.all(
            f"SELECT {bucket} AS minute, count(*) AS n FROM deliveries WHERE received_at>=? "
            "GROUP BY minute ORDER BY minute", (since,))]


def _is_contact(payload: object, contact_id: int, account_id: int | None) -> bool:
    if not isinstance(payload, dict) or payload.get("id") != contact_id:
        return False
    account = payload.get("account")
    return account_id is None or not isinstance(account, dict) or account.get("id") == account_id
