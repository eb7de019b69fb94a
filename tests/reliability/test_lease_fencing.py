"""R14: lease fencing on the state layer. A worker that lost its lease cannot touch the job."""

from __future__ import annotations

from pathlib import Path

from state import open_database


def _store_with_job(tmp_path: Path):  # noqa: ANN202
    store = open_database(str(tmp_path / "fencing.db"), migrate=True)
    with store.transaction() as tx:
        tx.conversations.upsert(7, 1, 100.0, status="pending")
        job = tx.jobs.get(tx.jobs.enqueue(7, 1, 501, 100.0, 0.0, 0.0))
    return store, job


def test_claim_is_exclusive_until_the_lease_expires(tmp_path: Path) -> None:
    store, job = _store_with_job(tmp_path)
    with store.transaction() as tx:
        [claimed] = tx.jobs.claim("worker-a", 101.0, 10.0, 4)
        assert claimed.id == job.id and claimed.lease_owner == "worker-a"
        assert tx.jobs.claim("worker-b", 105.0, 10.0, 4) == []  # still leased
        assert tx.jobs.extend_lease(job.id, "worker-b", 200.0) is False  # a foreign lease is not renewed
        [reclaimed] = tx.jobs.claim("worker-b", 111.5, 10.0, 4)  # expired: reclaimable
        assert reclaimed.lease_owner == "worker-b"


def test_a_stale_owner_cannot_complete_retry_or_release(tmp_path: Path) -> None:
    store, job = _store_with_job(tmp_path)
    with store.transaction() as tx:
        tx.jobs.claim("worker-a", 101.0, 1.0, 4)
        tx.jobs.claim("worker-b", 103.0, 30.0, 4)  # a's lease expired, b took over
        actions = [{"type": "reply", "content": "stale"}]
        assert tx.jobs.start_attempt(job.id, "worker-a", 104.0) is None
        assert tx.jobs.store_actions(job.id, "worker-a", actions, 104.0) is False
        assert tx.jobs.schedule_retry(job.id, "worker-a", 110.0, "x", 104.0) is False
        assert tx.jobs.finish(job.id, "worker-a", "done", "answered", "", 104.0) is False
        assert tx.jobs.set_waiting(job.id, "worker-a", run_at=1.0, deadline_at=2.0, external_id="e", now=104.0) is False
        assert tx.jobs.release_leases("worker-a", 104.0) == 0
        current = tx.jobs.get(job.id)
        assert (current.state, current.lease_owner, current.actions) == ("in_flight", "worker-b", None)
        assert tx.jobs.finish(job.id, "worker-b", "done", "answered", "", 105.0) is True
        assert tx.jobs.get(job.id).state == "done"
        # A late asynchronous answer for a finished job is a duplicate, not a second answer.
        assert tx.jobs.complete_async(current.request_id, actions, 106.0) == "duplicate"
        assert tx.jobs.complete_async("no-such-request", actions, 106.0) == "unknown"
    store.close()


def test_release_on_shutdown_makes_jobs_claimable_at_once(tmp_path: Path) -> None:
    store, job = _store_with_job(tmp_path)
    with store.transaction() as tx:
        tx.jobs.claim("worker-a", 101.0, 60.0, 4)
        assert tx.jobs.release_leases("worker-a", 102.0) == 1
        [again] = tx.jobs.claim("worker-b", 102.0, 60.0, 4)  # no need to wait for the lease
        assert again.id == job.id and again.attempts == 0
    store.close()
