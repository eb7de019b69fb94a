"""The journal: every acknowledged delivery once, by delivery id and by message."""

from __future__ import annotations

import time

from state import Database


def _delivery(db: Database, delivery_id: str | None, dedup: str | None, outcome: str = "accepted") -> bool:
    with db.transaction() as tx:
        return tx.journal.insert(delivery_id=delivery_id, dedup_key=dedup, event="message_created", outcome=outcome,
                                 received_at=time.time(), account_id=1, conversation_id=2, message_id=3, body="{}")


def test_deliveries_are_unique_by_delivery_id_and_by_dedup_key(db: Database) -> None:
    assert _delivery(db, "d1", "m:1")
    assert not _delivery(db, "d1", "m:2")
    assert not _delivery(db, "d2", "m:1")
    assert _delivery(db, None, None) and _delivery(db, None, None)


def test_pending_deliveries_come_in_arrival_order_until_applied(db: Database) -> None:
    for n in range(3):
        _delivery(db, f"d{n}", None, outcome="pending")
    pending = db.read(lambda tx: tx.journal.pending(10))
    assert [p.delivery_id for p in pending] == ["d0", "d1", "d2"]
    with db.transaction() as tx:
        tx.journal.set_outcomes([("accepted", "queued", pending[0].row_id)])
    assert [p.delivery_id for p in db.read(lambda tx: tx.journal.pending(10))] == ["d1", "d2"]
    backlog = db.read(lambda tx: tx.journal.backlog(time.time() + 5))
    assert backlog.unapplied == 2 and backlog.oldest_age is not None and backlog.oldest_age >= 5
    assert db.read(lambda tx: tx.journal.get("d0")).outcome == "accepted"


def test_a_failed_transaction_leaves_nothing(db: Database) -> None:
    try:
        with db.transaction() as tx:
            tx.journal.insert(delivery_id="x", dedup_key=None, event="e", received_at=time.time(), account_id=None,
                              conversation_id=None, message_id=None, body="{}")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert db.read(lambda tx: tx.journal.counts()) == {}
