"""What several processes share: additive metrics, the process registry, singleton leases,
documents, and the operators' writes with their audit trail."""

from __future__ import annotations

import json
import time

from state import Database, operator


def test_metrics_add_up_across_writers(db: Database) -> None:
    labels = json.dumps({"outcome": "accepted"})
    with db.transaction() as tx:
        tx.metrics.add([("c_total", labels, "counter", "", 2.0), ("h", "{}", "histogram", "b3", 1.0)], 1.0)
    with db.transaction() as tx:  # another process's increments
        tx.metrics.add([("c_total", labels, "counter", "", 3.0), ("h", "{}", "histogram", "b3", 4.0)], 2.0)
    totals = {(name, part): value for name, _l, _k, part, value in db.read(lambda tx: tx.metrics.totals())}
    assert totals == {("c_total", ""): 5.0, ("h", "b3"): 5.0}


def test_processes_are_live_until_they_stop_beating(db: Database) -> None:
    now = time.time()
    with db.transaction() as tx:
        tx.processes.beat("p1", role="all", host="h", pid=1, version="v", started_at=now, info={"x": 1}, now=now)
        tx.processes.beat("p2", role="worker", host="h", pid=2, version="v", started_at=now, info={}, now=now - 600)
    live = db.read(lambda tx: tx.processes.live(now))
    assert [(p["id"], p["info"]) for p in live] == [("p1", {"x": 1})]


def test_a_singleton_lease_has_one_holder_until_it_expires(db: Database) -> None:
    now = time.time()
    with db.transaction() as tx:
        assert tx.processes.hold("health", "a", now, 10)
        assert not tx.processes.hold("health", "b", now + 1, 10)
        assert tx.processes.hold("health", "a", now + 2, 10)  # renewed by its holder
        assert tx.processes.hold("health", "b", now + 13, 10)  # expired: taken over


def test_documents_keep_their_time(db: Database) -> None:
    with db.transaction() as tx:
        tx.documents.put("k", {"v": 1}, 123.0)
    assert db.read(lambda tx: tx.documents.get_with_age("k")) == ({"v": 1}, 123.0)
    assert db.read(lambda tx: tx.documents.get("missing")) is None


def test_operator_actions_are_recorded(db: Database) -> None:
    now = time.time()
    with db.transaction() as tx:
        tx.conversations.upsert(1, 2, now, channel="whatsapp")
        job = tx.jobs.enqueue(1, 2, 10, now, 0, 0)
        tx.jobs.claim("w", now, 30, 1)
        tx.jobs.finish(job, "w", "dead", "dead_letter", "crew down", now)
    assert db.write(lambda tx: operator.set_bot_ownership(tx, 1, 2, bot=False, actor="console:ana", now=now))
    assert db.read(lambda tx: tx.conversations.get(1, 2)).owner == "paused"
    assert db.write(operator.retry_dead_letter, job, "console:ana", now)
    assert not db.write(operator.retry_dead_letter, job, "console:ana", now)  # not dead any more
    assert db.read(lambda tx: tx.jobs.stats()).pending == 1
    assert [a.action for a in db.read(lambda tx: tx.audit.operator_actions())] == ["retry_dead_letter", "pause"]
