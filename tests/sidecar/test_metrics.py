"""GET /metrics: Prometheus text read by prometheus_client's parser, JSON, and restarts."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from sidecar.ops.metrics import Metrics
from simulators import FakeChatwoot, FakeCrew
from state import StateService, Tx, open_service
from tests.harness import InProcessSidecar
from tests.waiting import wait_until

CONTRACT_FAMILIES = {
    # family name as the parser reports it (a counter's family drops "_total") -> type
    "connector_webhooks_received": "counter",
    "connector_routing_decisions": "counter",
    "connector_crew_requests": "counter",
    "connector_crew_request_duration_seconds": "histogram",
    "connector_chatwoot_requests": "counter",
    "connector_queue_depth": "gauge",
    "connector_dead_letters": "gauge",
}
LATENCY_HISTOGRAMS = (
    "connector_intake_duration_seconds",
    "connector_routing_duration_seconds",
    "connector_crew_request_duration_seconds",
    "connector_chatwoot_request_duration_seconds",
)


async def scrape(sidecar: InProcessSidecar) -> dict[str, Any]:
    status, _, text = await sidecar.client.get("/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert len(families) == len(list(text_string_to_metric_families(text))), "a family is listed twice"
    return families


def value(families: dict[str, Any], sample_name: str, **labels: str) -> float:
    total = 0.0
    for family in families.values():
        for sample in family.samples:
            if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


async def _answered_flow(chatwoot: FakeChatwoot, count: int, sidecar: InProcessSidecar) -> None:
    """``count`` conversations answered, and everything they caused counted: the jobs finished and
    the replies' echoes (Chatwoot sends each reply back as a webhook) applied."""
    sent = len(chatwoot.webhook_results)
    for i in range(count):
        conv = chatwoot.open_conversation("whatsapp")
        status, body = await chatwoot.customer_says(conv, f"olá {i}")
        assert (status, body["status"]) == (200, "accepted")
        await chatwoot.wait_for(lambda c=conv: len(chatwoot.replies(c.display_id)) == 1)
    # The reply lands in Chatwoot a moment before its job is marked done: wait for that too.
    await wait_until(lambda: scrape(sidecar), until=lambda f: value(f, "connector_queue_depth") == 0,
                     what="queue drained")
    await chatwoot.wait_for(lambda: len(chatwoot.webhook_results) == sent + 2 * count)  # messages and echoes
    for delivery, *_ in chatwoot.webhook_results[sent:]:
        await sidecar.outcome(delivery)


async def test_prometheus_text_parses_and_counters_move(
    sidecar: InProcessSidecar, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    before = await scrape(sidecar)
    for name, kind in CONTRACT_FAMILIES.items():
        assert before[name].type == kind, name
    assert value(before, "connector_webhooks_received_total", outcome="accepted") == 0

    await _answered_flow(chatwoot, 2, sidecar)
    after = await scrape(sidecar)
    assert value(after, "connector_webhooks_received_total", event="message_created", outcome="accepted") == 2
    assert value(after, "connector_routing_decisions_total", crew="whatsapp_crew", source="rules") == 2
    assert value(after, "connector_crew_requests_total", crew="whatsapp_crew", outcome="answered") == 2
    assert value(after, "connector_chatwoot_requests_total", operation="reply", outcome="ok") == 2
    for histogram in LATENCY_HISTOGRAMS:
        assert after[histogram].type == "histogram"
        assert value(after, f"{histogram}_count") >= 2, histogram
        assert value(after, f"{histogram}_bucket", le="+Inf") == value(after, f"{histogram}_count")
    assert value(after, "connector_queue_depth") == 0


async def test_json_has_the_same_figures(sidecar: InProcessSidecar, chatwoot: FakeChatwoot) -> None:
    await _answered_flow(chatwoot, 1, sidecar)
    text = await scrape(sidecar)
    status, by_query, _ = await sidecar.client.get("/metrics?format=json")
    assert status == 200
    status, by_accept, _ = await sidecar.client.get("/metrics", headers={"Accept": "application/json"})
    assert status == 200
    for doc in (by_query, by_accept):
        family = doc["connector_webhooks_received_total"]
        assert family["type"] == "counter"
        accepted = sum(s["value"] for s in family["samples"] if s["labels"].get("outcome") == "accepted")
        assert accepted == value(text, "connector_webhooks_received_total", outcome="accepted") == 1
        crew = doc["connector_crew_request_duration_seconds"]["samples"]
        assert sum(s["count"] for s in crew) == value(text, "connector_crew_request_duration_seconds_count")
        assert doc["connector_queue_depth"]["samples"][0]["value"] == 0


async def test_figures_survive_a_restart(sidecar: InProcessSidecar, chatwoot: FakeChatwoot) -> None:
    """Stopped gracefully, the sidecar flushes its last figures; the next start reads them back."""
    await _answered_flow(chatwoot, 3, sidecar)
    before = await scrape(sidecar)
    assert value(before, "connector_webhooks_received_total", outcome="accepted") == 3
    await sidecar.stop()
    await sidecar.start()
    after = await scrape(sidecar)
    for name in ("connector_webhooks_received_total", "connector_crew_requests_total",
                 "connector_crew_request_duration_seconds_count", "connector_intake_duration_seconds_sum"):
        assert value(after, name) == value(before, name), name
    # And they keep counting from there.
    await _answered_flow(chatwoot, 1, sidecar)

    async def accepted() -> float:
        return value(await scrape(sidecar), "connector_webhooks_received_total", outcome="accepted")

    await wait_until(accepted, until=lambda n: n == 4, what="accepted counter after restart")


# -- a flush never shows an increment twice or not at all ----------------------------------------

COUNTER = "connector_webhooks_received_total"


async def _shown(service: StateService, metrics: Metrics) -> float:
    """The counter as /metrics shows it: stored totals and unstored increments, read together on
    the writer's thread (sidecar.http.routes.metrics)."""
    snap = await service.call(lambda db: db.read(lambda tx: metrics.snapshot(tx.metrics.totals())))
    return snap.counter(COUNTER, outcome="accepted")


def _flush(metrics: Metrics, rows: list[Any]) -> Any:
    def write(tx: Tx) -> None:  # what Runtime.flush writes
        tx.metrics.add(rows, 0.0)
        metrics.stored(rows)
    return write


async def test_a_counter_reads_the_same_before_during_and_after_its_flush(tmp_path: Path) -> None:
    service = open_service(str(tmp_path / "state.db"))
    metrics = Metrics()
    try:
        metrics.inc(COUNTER, 3, outcome="accepted")
        assert await _shown(service, metrics) == 3
        rows = metrics.flush_rows()
        # The writer is busy; a read queued before the flush's write and one queued after it.
        entered, release = threading.Event(), threading.Event()

        def busy(tx: Tx) -> None:
            entered.set()
            release.wait(10)

        held = asyncio.ensure_future(service.write(busy))
        await wait_until(entered.is_set, what="the writer held")
        before = asyncio.ensure_future(_shown(service, metrics))
        flushed = asyncio.ensure_future(service.write(_flush(metrics, rows)))
        after = asyncio.ensure_future(_shown(service, metrics))
        await asyncio.sleep(0)  # each has handed its work to the writer's queue (submit is synchronous)
        release.set()
        await asyncio.gather(held, flushed)
        assert (await before, await after) == (3, 3)  # not 0 before the commit, not 6 after it

        # A flush whose write failed gives its increments back: still shown once, stored next time.
        metrics.inc(COUNTER, 2, outcome="accepted")
        failed = metrics.flush_rows()
        assert await _shown(service, metrics) == 5
        metrics.restore(failed)
        assert await _shown(service, metrics) == 5
        await service.write(_flush(metrics, metrics.flush_rows()))
        assert await _shown(service, metrics) == 5
        assert await service.read(lambda tx: sum(v for n, _l, _k, _p, v in tx.metrics.totals() if n == COUNTER)) == 5
    finally:
        await asyncio.to_thread(service.close)
