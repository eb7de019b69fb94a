"""The state store: dedup, debounce bursts, leases and fencing, async answers, read-only access."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from state import DatabaseMissing, SchemaMismatch, StateError, Store, open_store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(str(tmp_path / "db" / "c.db"), migrate=True)


def _delivery(store: Store, delivery_id: str | None, dedup: str | None) -> bool:
    with store.transaction() as tx:
        return tx.insert_delivery(delivery_id=delivery_id, dedup_key=dedup, event="message_created",
                                  outcome="accepted", reason="", received_at=time.time(), account_id=1,
                                  conversation_id=2, message_id=3, body="{}")


def test_deliveries_are_unique_by_delivery_id_and_by_dedup_key(store: Store) -> None:
    assert _delivery(store, "d1", "m:1")
    assert not _delivery(store, "d1", "m:2")
    assert not _delivery(store, "d2", "m:1")
    assert _delivery(store, None, None) and _delivery(store, None, None)


def test_a_burst_stays_open_until_it_is_sent(store: Store) -> None:
    now = time.time()
    with store.transaction() as tx:
        first = tx.enqueue_message(1, 2, 10, now, debounce=2, debounce_max=5)
        second = tx.enqueue_message(1, 2, 11, now + 1, debounce=2, debounce_max=5)
        third = tx.enqueue_message(1, 2, 12, now + 4.5, debounce=2, debounce_max=5)
    assert first.id == second.id == third.id
    assert third.message_ids == (10, 11, 12)
    assert third.run_at == pytest.approx(now + 5)  # capped by debounce_max
    with store.transaction() as tx:
        [job] = tx.claim_jobs("w1", now + 6, 30, 4)
        tx.start_attempt(job.id, "w1", now + 6)
        tx.schedule_retry(job.id, "w1", now + 7, "503", now + 6)
        later = tx.enqueue_message(1, 2, 13, now + 6.5, debounce=2, debounce_max=5)
    # A request already sent to a crew never changes: a new burst starts.
    assert later.id != job.id and later.message_ids == (13,)


def test_claims_are_leased_fenced_and_one_per_conversation_in_order(store: Store) -> None:
    now = time.time()
    with store.transaction() as tx:
        a = tx.enqueue_message(1, 2, 10, now, 0, 0)
        tx.claim_jobs("w1", now, 30, 1)
        b = tx.enqueue_message(1, 2, 11, now, 0, 0)  # same conversation, later
        c = tx.enqueue_message(1, 3, 12, now, 0, 0)  # other conversation
        claimed = tx.claim_jobs("w2", now + 1, 30, 4)
    assert [j.id for j in claimed] == [c.id]  # b waits for a
    with store.transaction() as tx:
        assert not tx.finish_job(a.id, "w2", "done", "answered", "", now)  # not w2's lease
        assert tx.finish_job(a.id, "w1", "done", "answered", "", now)
        assert [j.id for j in tx.claim_jobs("w2", now + 2, 30, 4)] == [b.id]


def test_an_expired_lease_is_reclaimed_and_the_stale_owner_is_fenced(store: Store) -> None:
    now = time.time()
    with store.transaction() as tx:
        job = tx.enqueue_message(1, 2, 10, now, 0, 0)
        tx.claim_jobs("dead-worker", now, 5, 1)
        assert tx.claim_jobs("w2", now + 1, 5, 1) == []
        [again] = tx.claim_jobs("w2", now + 6, 5, 1)
        assert again.id == job.id and again.request_id == job.request_id
        assert not tx.store_actions(job.id, "dead-worker", [{"type": "reply", "content": "x"}], now + 7)
        assert tx.store_actions(job.id, "w2", [{"type": "reply", "content": "x"}], now + 7)


def test_async_answers_apply_once(store: Store) -> None:
    now = time.time()
    with store.transaction() as tx:
        job = tx.enqueue_message(1, 2, 10, now, 0, 0)
        tx.claim_jobs("w", now, 30, 1)
        tx.set_waiting(job.id, "w", run_at=now + 60, deadline_at=now + 60, external_id=job.request_id, now=now)
        assert tx.complete_async(job.request_id, [{"type": "reply", "content": "hi"}], now) == "applied"
        assert tx.complete_async(job.request_id, [{"type": "reply", "content": "again"}], now) == "duplicate"
        assert tx.complete_async("nope", [], now) == "unknown"
        [ready] = tx.claim_jobs("w", now + 1, 30, 1)
    assert ready.actions == ({"type": "reply", "content": "hi"},)


def test_release_leases_hands_work_back(store: Store) -> None:
    now = time.time()
    with store.transaction() as tx:
        tx.enqueue_message(1, 2, 10, now, 0, 0)
        tx.claim_jobs("w", now, 30, 1)
        assert tx.release_leases("w", now) == 1
    assert store.queue_stats().pending == 1


def test_a_failed_transaction_leaves_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.insert_delivery(delivery_id="x", dedup_key=None, event="e", outcome="accepted", reason="",
                           received_at=time.time(), account_id=None, conversation_id=None, message_id=None, body="{}")
        raise RuntimeError("boom")
    assert store.delivery_counts() == {}


def test_readers_cannot_write_and_see_committed_data(store: Store, tmp_path: Path) -> None:
    _delivery(store, "d1", None)
    reader = open_store(store.path, readonly=True)
    assert reader.delivery_counts() == {"accepted": 1}
    with pytest.raises(StateError):
        with reader.transaction():
            pass
    with pytest.raises(sqlite3.OperationalError):
        reader.conn.execute("DELETE FROM deliveries")


def test_missing_and_foreign_databases_are_reported(tmp_path: Path) -> None:
    with pytest.raises(DatabaseMissing):
        open_store(str(tmp_path / "nope.db"), readonly=True)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(SchemaMismatch):
        open_store(str(other), readonly=True)


def test_operator_actions_are_recorded(store: Store) -> None:
    now = time.time()
    with store.transaction() as tx:
        tx.upsert_conversation(1, 2, now, channel="whatsapp")
        job = tx.enqueue_message(1, 2, 10, now, 0, 0)
        tx.claim_jobs("w", now, 30, 1)
        tx.finish_job(job.id, "w", "dead", "dead_letter", "crew down", now)
    assert store.set_bot_ownership(1, 2, bot=False, actor="console:ana")
    assert store.get_conversation_row(1, 2).owner == "paused"
    assert store.retry_dead_letter(job.id, "console:ana")
    assert store.queue_stats().pending == 1
    assert [a.action for a in store.operator_actions()] == ["retry_dead_letter", "pause"]


def test_folding_overtaken_bursts_keeps_the_newest_messages_only(store: Store) -> None:
    from state.store import MAX_BURST_MESSAGES

    now = time.time()
    with store.transaction() as tx:
        older = tx.enqueue_message(1, 2, 1, now, 0, 0)
        for mid in range(2, MAX_BURST_MESSAGES + 1):
            older = tx.enqueue_message(1, 2, mid, now, 0, 0)
        tx.claim_jobs("w", now, 30, 1)
        newer = tx.enqueue_message(1, 2, 1000, now, 0, 0)
        tx.fold_into(tx.get_job(older.id), newer, now)
        merged = tx.get_job(newer.id)
    assert len(merged.message_ids) == MAX_BURST_MESSAGES and merged.message_ids[-1] == 1000
