"""The queue: debounced bursts, leases and fencing, one conversation at a time, async answers."""

from __future__ import annotations

import time

import pytest

from state import MAX_BURST_MESSAGES, Database, Route


def test_a_burst_stays_open_until_it_is_sent(db: Database) -> None:
    now = time.time()
    with db.transaction() as tx:
        first = tx.jobs.enqueue(1, 2, 10, now, debounce=2, debounce_max=5)
        second = tx.jobs.enqueue(1, 2, 11, now + 1, debounce=2, debounce_max=5)
        third = tx.jobs.enqueue(1, 2, 12, now + 4.5, debounce=2, debounce_max=5)
        burst = tx.jobs.get(third)
    assert first == second == third
    assert burst.message_ids == (10, 11, 12)
    assert burst.run_at == pytest.approx(now + 5)  # capped by debounce_max
    with db.transaction() as tx:
        [job] = tx.jobs.claim("w1", now + 6, 30, 4)
        tx.jobs.start_attempt(job.id, "w1", now + 6)
        tx.jobs.schedule_retry(job.id, "w1", now + 7, "503", now + 6)
        later = tx.jobs.get(tx.jobs.enqueue(1, 2, 13, now + 6.5, debounce=2, debounce_max=5))
    # A request already sent to a crew never changes: a new burst starts.
    assert later.id != job.id and later.message_ids == (13,)


def test_claims_are_leased_fenced_and_one_per_conversation_in_order(db: Database) -> None:
    now = time.time()
    with db.transaction() as tx:
        a = tx.jobs.enqueue(1, 2, 10, now, 0, 0)
        tx.jobs.claim("w1", now, 30, 1)
        b = tx.jobs.enqueue(1, 2, 11, now, 0, 0)  # same conversation, later
        c = tx.jobs.enqueue(1, 3, 12, now, 0, 0)  # other conversation
        claimed = tx.jobs.claim("w2", now + 1, 30, 4)
    assert [j.id for j in claimed] == [c]  # b waits for a
    with db.transaction() as tx:
        assert not tx.jobs.finish(a, "w2", "done", "answered", "", now)  # not w2's lease
        assert tx.jobs.finish(a, "w1", "done", "answered", "", now)
        assert [j.id for j in tx.jobs.claim("w2", now + 2, 30, 4)] == [b]


def test_an_expired_lease_is_reclaimed_and_the_stale_owner_is_fenced(db: Database) -> None:
    now = time.time()
    with db.transaction() as tx:
        job = tx.jobs.enqueue(1, 2, 10, now, 0, 0)
        tx.jobs.claim("dead-worker", now, 5, 1)
        assert tx.jobs.claim("w2", now + 1, 5, 1) == []
        # The stale owner's renewal after expiry does not bring its lease back.
        assert tx.jobs.renew_leases("dead-worker", now + 6, now + 60) == 0
        [again] = tx.jobs.claim("w2", now + 6, 5, 1)
        assert again.id == job and again.request_id == tx.jobs.get(job).request_id
        assert not tx.jobs.store_actions(job, "dead-worker", [{"type": "reply", "content": "x"}], now + 7)
        assert tx.jobs.store_actions(job, "w2", [{"type": "reply", "content": "x"}], now + 7)


def test_one_statement_renews_every_live_lease_of_a_worker(db: Database) -> None:
    now = time.time()
    with db.transaction() as tx:
        for conv in range(3):
            tx.jobs.enqueue(1, conv, 10 + conv, now, 0, 0)
        tx.jobs.claim("w", now, 5, 3)
        assert tx.jobs.renew_leases("w", now + 1, now + 100) == 3
        assert tx.jobs.claim("other", now + 50, 5, 3) == []  # still held at +50 s


def test_an_attempt_stores_route_and_envelope_and_counts_in_one_fenced_statement(db: Database) -> None:
    now = time.time()
    with db.transaction() as tx:
        job = tx.jobs.enqueue(1, 2, 10, now, 0, 0)
        tx.jobs.claim("w", now, 30, 1)
        route = Route("vendas", "http", "rules", "rule 1", None)
        assert tx.jobs.start_attempt(job, "someone-else", now, route=route, envelope_json='{"a":1}') is None
        assert tx.jobs.start_attempt(job, "w", now, route=route, envelope_json='{"a":1}') == 1
        assert tx.jobs.start_attempt(job, "w", now) == 2
        stored = tx.jobs.get(job)
    assert (stored.crew, stored.route_source, stored.envelope) == ("vendas", "rules", {"a": 1})


def test_async_answers_apply_once(db: Database) -> None:
    now = time.time()
    with db.transaction() as tx:
        job = tx.jobs.get(tx.jobs.enqueue(1, 2, 10, now, 0, 0))
        tx.jobs.claim("w", now, 30, 1)
        tx.jobs.set_waiting(job.id, "w", run_at=now + 60, deadline_at=now + 60, external_id=job.request_id, now=now)
        assert tx.jobs.complete_async(job.request_id, [{"type": "reply", "content": "hi"}], now) == "applied"
        assert tx.jobs.complete_async(job.request_id, [{"type": "reply", "content": "again"}], now) == "duplicate"
        assert tx.jobs.complete_async("nope", [], now) == "unknown"
        [ready] = tx.jobs.claim("w", now + 1, 30, 1)
    assert ready.actions == ({"type": "reply", "content": "hi"},)


def test_release_leases_hands_work_back(db: Database) -> None:
    now = time.time()
    with db.transaction() as tx:
        tx.jobs.enqueue(1, 2, 10, now, 0, 0)
        tx.jobs.claim("w", now, 30, 1)
        assert tx.jobs.release_leases("w", now) == 1
    assert db.read(lambda tx: tx.jobs.stats()).pending == 1


def test_folding_overtaken_bursts_keeps_the_newest_messages_only(db: Database) -> None:
    now = time.time()
    with db.transaction() as tx:
        older = tx.jobs.enqueue(1, 2, 1, now, 0, 0)
        for mid in range(2, MAX_BURST_MESSAGES + 1):
            older = tx.jobs.enqueue(1, 2, mid, now, 0, 0)
        tx.jobs.claim("w", now, 30, 1)
        newer = tx.jobs.get(tx.jobs.enqueue(1, 2, 1000, now, 0, 0))
        tx.jobs.fold_into(tx.jobs.get(older), newer, now)
        merged = tx.jobs.get(newer.id)
    assert len(merged.message_ids) == MAX_BURST_MESSAGES and merged.message_ids[-1] == 1000
