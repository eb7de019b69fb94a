"""Seeds a state file with rows of every kind, old and recent, through the state's own stores
(retention, console and erasure tests)."""

from __future__ import annotations

import time
from pathlib import Path

from state import Tx, open_database

DAY = 86400.0


def seed_history(location: str | Path, *, now: float | None = None, old_days: float = 40.0, deliveries: int = 23) -> dict[str, int]:
    """Old applied deliveries, old finished and dead jobs (with their messages), old outcomes and
    a recent row of each; returns the ids a test checks."""
    now = time.time() if now is None else now
    old = now - old_days * DAY
    ids: dict[str, int] = {}

    def unit(tx: Tx) -> None:
        for n in range(deliveries):
            tx.journal.insert(delivery_id=f"old-{n}", dedup_key=f"old-{n}", event="message_created", received_at=old,
                              account_id=1, conversation_id=900, message_id=None, body='{"old": true}',
                              outcome="accepted")
        tx.journal.insert(delivery_id="recent", dedup_key="recent", event="message_created", received_at=now,
                          account_id=1, conversation_id=901, message_id=None, body="{}", outcome="ignored")
        for key, conversation, state in (("done", 902, "done"), ("dead", 903, "dead")):
            tx.conversations.upsert(1, conversation, old, contact_name=f"Old contact {conversation}",
                                    last_message_at=old, channel="whatsapp")
            tx.messages.insert(account_id=1, conversation_id=conversation, message_id=conversation * 10, role="customer",
                               sender_type="contact", sender_id=7, content=f"old message {conversation}",
                               content_type="text", attachments=[], private=False, content_hash="h",
                               created_at=old)
            job = tx.jobs.enqueue(1, conversation, conversation * 10, old, 0, 0, new_conversation=True)
            tx.sql.execute("UPDATE jobs SET state=?, finished_at=?, created_at=?, last_error=? WHERE id=?",
                           (state, old, old, "crew failed: HTTP 503" if state == "dead" else "", job))
            ids[key] = job
        for _ in range(3):
            tx.outcomes.record("answered", account_id=1, conversation_id=902, crew="faq", rule="", now=old, value=1.0)
    db = open_database(str(location), migrate=True)
    try:
        db.write(unit)
    finally:
        db.close()
    return ids


def every_text(tx: Tx) -> str:
    """Every value of every row of every table (blobs decoded), as one text, on either back-end."""
    tables = tx.sql.column(
        "SELECT name FROM sqlite_master WHERE type='table'" if tx.sql.dialect.name == "sqlite" else
        "SELECT table_name FROM information_schema.tables WHERE table_schema='public' AND table_type='BASE TABLE'")
    chunks: list[str] = []
    for table in tables:
        for row in tx.sql.all(f'SELECT * FROM "{table}"'):
            chunks += [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in row.values()]
    return "\n".join(chunks)
