"""Retention in a running sidecar: the background pass prunes old rows in batches, keeps dead
letters and open work, gives space back, and /health and /metrics show the size and oldest row."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from simulators import FakeChatwoot
from tests import backends
from tests.conftest import SidecarFactory
from tests.harness import InProcessSidecar
from tests.seeding import seed_history
from tests.sidecar.test_metrics import scrape, value
from tests.waiting import wait_until

RETENTION = {"retention": {"interval_seconds": 0.2, "batch_rows": 5, "messages_days": 30}}


async def _storage(proc: InProcessSidecar) -> dict[str, Any]:
    status, body, _ = await proc.client.get("/health")
    assert status == 200, {name: (c.get("status"), c.get("detail")) for name, c in body["checks"].items()
                           if isinstance(c, dict) and "status" in c}
    return body["checks"]["storage"]


def _seed(tmp_path: Path, deliveries: int) -> dict[str, int]:
    """Seeds the state the test's sidecar will open (a file, or the PostgreSQL database made for
    the test's folder: tests.backends)."""
    return seed_history(backends.state_location(tmp_path), deliveries=deliveries)


async def test_a_pass_prunes_old_rows_in_batches_and_keeps_dead_letters(
        sidecar_factory: SidecarFactory, tmp_path: Path) -> None:
    ids = _seed(tmp_path, deliveries=23)
    proc = await sidecar_factory(RETENTION)
    storage = await wait_until(lambda: _storage(proc),
                               until=lambda s: (s.get("last_pass") or {}).get("pruned", {}).get("deliveries") == 23,
                               what="a retention pass pruned the old deliveries")
    report = storage["last_pass"]
    assert report["pruned"]["jobs"] == 1 and report["pruned"]["outcomes"] == 3
    assert report["batches"] >= 23 // 5 + 1  # five rows per transaction
    deliveries = proc.query(lambda tx: tx.sql.column("SELECT delivery_id FROM deliveries"))
    assert deliveries == ["recent"]
    jobs = proc.query(lambda tx: tx.sql.column("SELECT id FROM jobs ORDER BY id"))
    assert jobs == [ids["dead"]]
    dead = proc.query(lambda tx: tx.dead_letter(ids["dead"]))
    assert dead is not None and [m.content for m in dead.messages] == ["old message 903"]
    assert proc.query(lambda tx: tx.sql.column("SELECT message_id FROM messages")) == [9030]
    assert storage["status"] == "ok"
    assert storage["auto_vacuum"] == ("incremental" if backends.BACKEND == backends.SQLITE else "autovacuum")
    assert storage["file_bytes"] > 0 and storage["oldest_row_kind"] is not None
    assert storage["oldest_row_age_seconds"] > 30 * 86400  # the dead letter's job and message stay
    assert storage["oldest_by_kind"]["deliveries"] is not None


async def test_metrics_show_size_oldest_row_and_pruned_rows(sidecar_factory: SidecarFactory,
                                                            tmp_path: Path) -> None:
    _seed(tmp_path, deliveries=7)
    proc = await sidecar_factory(RETENTION)
    families = await wait_until(
        lambda: scrape(proc),
        # The counter goes up batch by batch; the pass's report (its timestamp) is written at its end.
        until=lambda f: value(f, "connector_retention_pruned_total", kind="deliveries") == 7
        and value(f, "connector_retention_last_pass_timestamp_seconds") > 0, what="a pass pruned and reported")
    assert value(families, "connector_database_size_bytes") > 0
    assert value(families, "connector_database_reusable_bytes") >= 0
    assert value(families, "connector_oldest_row_timestamp_seconds", kind="jobs") > 0
    assert value(families, "connector_retention_last_pass_timestamp_seconds") > 0
    status, doc, _ = await proc.client.get("/metrics?format=json")
    assert status == 200 and doc["connector_database_size_bytes"]["samples"][0]["value"] > 0


async def test_zero_days_keeps_everything(sidecar_factory: SidecarFactory, tmp_path: Path) -> None:
    _seed(tmp_path, deliveries=4)
    keep = {kind: 0 for kind in ("deliveries", "jobs", "decisions", "messages", "outcomes", "handoffs", "audit",
                                 "metrics")}
    proc = await sidecar_factory({"retention": {"interval_seconds": 0.2, **{f"{k}_days": v for k, v in keep.items()}}})
    storage = await wait_until(lambda: _storage(proc), until=lambda s: s.get("last_pass") is not None,
                               what="a retention pass")
    assert storage["last_pass"]["pruned"] == {}
    assert len(storage["last_pass"]["kept_forever"]) == len(keep)
    assert proc.query(lambda tx: tx.sql.scalar("SELECT count(*) FROM deliveries")) == 5


async def test_the_filter_index_catches_up_in_the_background(sidecar_factory: SidecarFactory,
                                                             chatwoot: FakeChatwoot) -> None:
    """A conversation that arrives over a webhook is in the filter's index a moment later, and the
    filter finds it through the index (and before, through the list of what changed)."""
    proc = await sidecar_factory()
    conv = chatwoot.open_conversation("whatsapp", contact_name="Quintino Bocaiúva")
    status, body = await chatwoot.customer_says(conv, "Meu pedido chegou quebrado")
    assert (status, body["status"]) == (200, "accepted")
    found = await wait_until(
        lambda: proc.query(lambda tx: [c.conversation_id for c in tx.conversations.page(text="Bocaiúva")]),
        until=lambda ids: ids == [conv.display_id], what="the filter finds the new conversation")
    assert found
    if backends.BACKEND != backends.SQLITE:
        return  # PostgreSQL's filter has no index of its own to catch up (trigram indexes, or a scan)
    indexed = await wait_until(
        lambda: proc.query(lambda tx: (tx.search.pending(), tx.sql.column(
            "SELECT rowid FROM conversation_search WHERE conversation_search MATCH ?", ('"Bocaiúva"',)))),
        until=lambda r: r[0] == 0 and len(r[1]) == 1, what="the index caught up")
    assert indexed


async def test_one_pass_at_a_time_per_state(tmp_path: Path) -> None:
    """Two worker processes (two owners on one state): only the lease holder prunes; once it hands
    the lease on at shutdown, the other one does."""
    from connector_config import Config
    from sidecar.ops.metrics import Metrics
    from sidecar.ops.retention import RetentionLoop
    from sidecar.queue.pacing import unpaced
    from state import open_service

    location = backends.state_location(tmp_path)
    seed_history(location, deliveries=3)
    service = open_service(location)
    try:
        loops = [RetentionLoop(config=Config, state=service, metrics=Metrics(), pacing=unpaced(), owner=owner)
                 for owner in ("worker-a", "worker-b")]
        first = await loops[0].pass_once()
        assert first is not None and first["pruned"]["deliveries"] == 3
        assert await loops[1].pass_once() is None  # worker-a holds the lease
        assert await loops[0].pass_once() is not None  # the holder keeps it
        await loops[0].release()
        second = await loops[1].pass_once()
        assert second is not None and second["pruned"] == {}
    finally:
        await asyncio.to_thread(service.close)


def test_a_file_that_cannot_give_space_back_says_how_to_fix_it() -> None:
    """/health's storage check (and, from it, the warnings) names `compact` for an old file."""
    from sidecar.ops.retention import storage_check
    from state import StorageFigures
    from state.retention import OldestRows

    old = StorageFigures(file_bytes=300 * 2**20, wal_bytes=0, page_size=4096, pages=76800, free_pages=1000,
                         auto_vacuum="none")
    check = storage_check(old, OldestRows({"jobs": 100.0, "messages": None}), None, now=200.0)
    assert check["status"] == "ok" and "python -m sidecar compact" in check["detail"] and "300 MiB" in check["detail"]
    assert (check["oldest_row_kind"], check["oldest_row_age_seconds"]) == ("jobs", 100.0)
    assert check["reusable_bytes"] == 1000 * 4096 and check["last_pass_at"] is None
    fine = StorageFigures(file_bytes=2**20, wal_bytes=2**20, page_size=4096, pages=256, free_pages=0,
                          auto_vacuum="incremental")
    assert storage_check(fine, OldestRows({}), {"at": 150.0}, now=200.0)["detail"] == "2.0 MiB"
