"""Slow crews never queue customers: calls are bounded per back-end (waiting for a slot is not part
of a call's timeout), an asynchronous crew holds no worker slot while it thinks, and an answer that
arrives after a timeout is not paid for twice. Over real HTTP, against the fake Chatwoot and crews."""

from __future__ import annotations

from simulators import FakeChatwoot, FakeCrew
from tests.conftest import SidecarFactory
from tests.harness import InProcessSidecar
from tests.reliability.helpers import jobs, open_jobs, rows
from tests.waiting import wait_until


async def _health(proc: InProcessSidecar) -> dict:
    return (await proc.client.get("/health"))[1]


async def _metric(proc: InProcessSidecar, name: str, backend: str) -> float | None:
    doc = (await proc.client.get("/metrics?format=json"))[1]
    for sample in doc[name]["samples"]:
        if sample["labels"].get("backend") == backend:
            return sample["value"]
    return None


async def test_calls_wait_for_a_slot_outside_their_timeout(sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot,
                                                           crew: FakeCrew) -> None:
    """30 conversations, a crew that takes 0.3 s and takes 3 at a time, a 2 s timeout: the last
    calls wait about 3 s for a slot, yet none times out; the crew never has more than 3 and works
    each message once. (A call's own 0.3 s leaves its timeout a wide margin on a loaded machine;
    only the wait for a slot passes it, and that wait is not counted.)"""
    proc = await sidecar_factory({"mcp_crew": {"timeout_seconds": 2.0, "max_in_flight": 3}})
    crew.latency = 0.3
    conversations = [chatwoot.open_conversation("whatsapp") for _ in range(30)]
    for conv in conversations:
        await chatwoot.customer_says(conv, "Meu pedido não chegou")
    await chatwoot.wait_for(lambda: all(chatwoot.replies(c.display_id) for c in conversations), timeout=60)
    assert crew.max_in_flight == 3
    assert crew.work == 30 and crew.joined == 0 and crew.duplicates == 0
    attempts = rows(proc, "SELECT outcome FROM crew_attempts")
    assert [a["outcome"] for a in attempts] == ["answered"] * 30  # not one timed out waiting
    assert all(len(chatwoot.replies(c.display_id)) == 1 for c in conversations)


async def test_each_crew_back_end_has_its_own_limit_and_shows_it(sidecar_factory: SidecarFactory,
                                                                  chatwoot: FakeChatwoot, crew: FakeCrew) -> None:
    """A slow crew with room for 2 calls keeps to 2 and never holds up another crew's
    conversations; /health, /metrics and the console's snapshot show its calls in flight."""
    async with FakeCrew(api_key=crew.api_key) as slow:
        slow.latency = 30.0  # answers when the test lets it (stop() ends the wait)
        proc = await sidecar_factory({
            "crews": {"vendas": {"backend": "http", "url": slow.crew_url, "token": slow.api_key,
                                 "max_in_flight": 2, "timeout_seconds": 60}},
            "routing": {"rules": [{"channel": "whatsapp", "crew": "vendas"}]},
        })
        waiting = [chatwoot.open_conversation("whatsapp") for _ in range(5)]
        quick = [chatwoot.open_conversation("facebook") for _ in range(5)]
        for conv in waiting + quick:
            await chatwoot.customer_says(conv, "Quero comprar")
        await chatwoot.wait_for(lambda: all(chatwoot.replies(c.display_id) for c in quick), timeout=20)
        await slow.wait_for(lambda: slow.in_flight == 2)

        async def shown() -> bool:
            backend = (await _health(proc))["checks"]["backends"].get("vendas") or {}
            return (backend.get("in_flight"), backend.get("limit"), backend.get("waiting")) == (2, 2, 3)

        await wait_until(shown, what="/health shows 2 of 2 calls in flight and 3 waiting")
        assert await _metric(proc, "connector_crew_in_flight", "vendas") == 2
        assert await _metric(proc, "connector_crew_in_flight_limit", "vendas") == 2

        def console_sees() -> bool:
            doc = proc.query(lambda tx: tx.documents.get("health.snapshot")) or {}
            return doc.get("checks", {}).get("backends", {}).get("vendas", {}).get("in_flight") == 2

        await wait_until(console_sees, what="the console's health snapshot shows the calls in flight")
        assert slow.max_in_flight == 2
        assert not any(chatwoot.replies(c.display_id) for c in waiting)
        slow.latency = 0.0
    # The fake's stop ended the two waits early (an error answer): they are retried like any failure.
    assert all(len(chatwoot.replies(c.display_id)) == 1 for c in quick)


async def test_an_async_crew_holds_no_worker_slot(sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot,
                                                  crew: FakeCrew) -> None:
    """With room for 2 jobs, 8 conversations all reach a crew that answers 202 and calls back
    later: a parked job holds no slot, so the worker keeps taking new ones meanwhile."""
    proc = await sidecar_factory({"processing": {"concurrency": 2}})
    crew.mode = "async"
    crew.hold_callbacks()  # no answer comes back until all 8 requests have arrived
    conversations = [chatwoot.open_conversation("webwidget") for _ in range(8)]
    for conv in conversations:
        await chatwoot.customer_says(conv, "Oi")
    # Were a parked job holding its slot, only 2 requests could arrive before a callback.
    await crew.wait_for(lambda: len(crew.crew_requests()) == 8, timeout=20)
    assert len(crew.callbacks_sent) == 0
    assert {j["state"] for j in jobs(proc)} <= {"waiting", "pending", "in_flight", "done"}
    crew.release_callbacks()
    await chatwoot.wait_for(lambda: all(chatwoot.replies(c.display_id) for c in conversations), timeout=30)
    await wait_until(lambda: open_jobs(proc) == 0, what="every job finished")


async def test_a_late_answer_is_not_paid_for_twice(sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot,
                                                   crew: FakeCrew) -> None:
    """The crew needs 1.2 s, the sidecar gives up after 0.5 s and retries with the same
    Idempotency-Key: the retry gets the answer of the work already under way, which is done once."""
    proc = await sidecar_factory({"mcp_crew": {"timeout_seconds": 0.5}})
    crew.latency = 1.2
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "Qual o prazo de entrega?")
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1, timeout=20)
    # The job is finished in the commit after the reply's post.
    await wait_until(lambda: [j["state"] for j in jobs(proc, conv.display_id)] == ["done"], what="the job done")
    [job] = jobs(proc, conv.display_id)
    assert job["attempts"] >= 2
    keys = {r.headers.get("Idempotency-Key") for r in crew.requests if r.kind == "crew"}
    assert keys == {job["request_id"]}  # every attempt under the same key
    assert crew.work == 1  # the crew worked once; the retries joined or replayed that work
    assert crew.joined + crew.duplicates >= 1
    outcomes = [a["outcome"] for a in rows(proc, "SELECT outcome FROM crew_attempts WHERE job_id=? ORDER BY id",
                                           (job["id"],))]
    assert outcomes[0] == "retry" and outcomes[-1] == "answered"
    assert len(chatwoot.replies(conv.display_id)) == 1
