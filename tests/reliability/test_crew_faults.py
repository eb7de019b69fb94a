"""R5-R8: MCP-Crew outages, hangs, permanent errors and the circuit breaker.

Durations come from a "test clock": the config's retry and breaker durations are fractions of
a second, so a schedule of minutes plays out in about a second with the same arithmetic.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from simulators import FakeChatwoot, FakeCrew
from simulators.fake_crew import default_responder
from tests.harness import InProcessSidecar
from tests.reliability.helpers import (
    Ledger,
    breaker_states,
    health,
    jobs,
    median,
    open_jobs,
    post_delivery,
    rows,
    signed_delivery,
)
from tests.waiting import wait_until

BASE, MAXIMUM, MAX_ATTEMPTS = 0.1, 0.8, 5
SLACK = 1.0  # scheduling latency allowed on a busy 2-core machine (the worker idles <= 1 s)


def _conversation_of(request: Any) -> int:
    return int(((request.body or {}).get("chatwoot") or {}).get("conversation_id") or 0)


def _ceiling(attempt: int) -> float:
    return min(MAXIMUM, BASE * 2 ** (attempt - 1))


@pytest.mark.slow
async def test_outage_with_retry_after_follows_the_schedule_and_drains(
    sidecar_factory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    proc: InProcessSidecar = await sidecar_factory({"processing": {
        "retry_base_seconds": BASE, "retry_max_seconds": MAXIMUM, "max_attempts": MAX_ATTEMPTS}})
    with_ra, without_ra, dead = (chatwoot.open_conversation("whatsapp") for _ in range(3))
    healthy = [chatwoot.open_conversation("webwidget") for _ in range(3)]
    # Per conversation: (failures before recovering, Retry-After seconds or None).
    plan = {with_ra.display_id: (3, 0.3), without_ra.display_id: (3, None), dead.display_id: (99, 0.2)}
    seen: dict[int, int] = {}

    def responder(envelope: dict[str, Any]) -> list[dict[str, Any]]:
        cid = int(envelope["chatwoot"]["conversation_id"])
        failures, retry_after = plan.get(cid, (0, None))
        seen[cid] = seen.get(cid, 0) + 1
        if seen[cid] <= failures:
            headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
            raise web.HTTPServiceUnavailable(headers=headers, text="overloaded")
        return default_responder(envelope)

    crew.responder = responder
    for conv in (with_ra, without_ra, dead, *healthy):
        status, body = await chatwoot.customer_says(conv, "Meu pedido ainda não chegou")
        assert (status, body["status"]) == (200, "accepted")

    await wait_until(lambda: open_jobs(proc) == 0 and len(jobs(proc)) == 6, timeout=40, what="backlog drained")
    stats = proc.query(lambda s: s.jobs.stats())
    assert (stats.pending, stats.in_flight, stats.waiting, stats.dead) == (0, 0, 0, 1)

    for conv in (with_ra, without_ra, dead):
        failures, retry_after = plan[conv.display_id]
        times = [r.at for r in crew.requests if r.kind == "crew" and _conversation_of(r) == conv.display_id]
        expected = min(failures + 1, MAX_ATTEMPTS)
        assert len(times) == expected, (conv.display_id, len(times))
        for attempt, (earlier, later) in enumerate(zip(times, times[1:], strict=False), start=1):
            gap = later - earlier
            floor = min(retry_after, MAXIMUM) if retry_after else 0.0
            assert gap >= floor - 0.02, f"attempt {attempt}: came back after {gap:.3f}s, Retry-After {floor}"
            assert gap <= max(_ceiling(attempt), floor) + SLACK, f"attempt {attempt}: waited {gap:.3f}s"
        [job] = jobs(proc, conv.display_id)
        assert job["attempts"] == expected <= MAX_ATTEMPTS
        recorded = rows(proc, "SELECT attempt, outcome, status_code FROM crew_attempts WHERE job_id=? ORDER BY id",
                        (job["id"],))
        assert [r["attempt"] for r in recorded] == list(range(1, expected + 1))
        assert all(r["status_code"] == 503 for r in recorded[:failures])

    [dead_job] = jobs(proc, dead.display_id)
    assert dead_job["state"] == "dead" and f"after {MAX_ATTEMPTS} attempts" in dead_job["last_error"]
    assert any("503" in (n or "") for n in chatwoot.notes(dead.display_id))  # reason visible to agents
    # Nothing reached the crew twice successfully: one answered key per answered job.
    done = [j for j in jobs(proc) if j["state"] == "done"]
    assert len(done) == 5
    assert sorted(crew.unique_requests()) == sorted(j["request_id"] for j in done)
    assert crew.duplicates == 0
    for conv in (with_ra, without_ra, *healthy):
        assert len(chatwoot.replies(conv.display_id)) == 1
    assert chatwoot.replies(dead.display_id) == []


async def test_hanging_crew_times_out_on_time_and_intake_stays_fast(
    sidecar_factory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    timeout = 1.0
    proc = await sidecar_factory({"mcp_crew": {"timeout_seconds": timeout}, "processing": {"concurrency": 4}})

    async def round_trips(count: int, session: aiohttp.ClientSession) -> list[float]:
        ledger = Ledger()
        for _ in range(count):
            conv = chatwoot.open_conversation("instagram")
            delivery, body, headers = signed_delivery(chatwoot, conv, "oi, tudo bem?")
            assert await post_delivery(session, proc.webhook_url, delivery, body, headers, ledger) == 200
        return ledger.latencies

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        before = await round_trips(15, session)
        await wait_until(lambda: open_jobs(proc) == 0, what="warm-up answered")
        answered_before = len(crew.unique_requests())

        crew.hang_next(4)  # every forwarder slot blocked
        hung = [chatwoot.open_conversation("whatsapp") for _ in range(4)]
        for conv in hung:
            await chatwoot.customer_says(conv, "Qual o preço?")
        await crew.wait_for(lambda: len(crew.crew_requests()) >= answered_before + 4)
        hang_started = time.monotonic()
        during = await round_trips(15, session)
        measured_in = time.monotonic() - hang_started

    assert measured_in < timeout, "the measurement must happen while the crew hangs (machine too slow?)"
    # A correctness check, not a benchmark: intake does not wait for the crew.
    assert median(during) <= max(3 * median(before), median(before) + 0.05), (median(before), median(during))

    await wait_until(lambda: open_jobs(proc) == 0, timeout=30, what="everything answered after the hang")
    for conv in hung:
        [job] = jobs(proc, conv.display_id)
        first = rows(proc, "SELECT * FROM crew_attempts WHERE job_id=? ORDER BY id", (job["id"],))[0]
        assert first["outcome"] == "retry" and "timed out" in first["error"]
        assert timeout * 0.9 <= first["duration"] <= timeout + 0.6, first["duration"]
        assert job["state"] == "done" and job["attempts"] == 2
        assert len(chatwoot.replies(conv.display_id)) == 1
    total_jobs = len(jobs(proc))
    assert len(set(crew.unique_requests())) == total_jobs and crew.duplicates == 0


async def test_crew_4xx_is_a_dead_letter_after_one_attempt_with_the_reason_visible(
    sidecar_factory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    # The breaker is on and would open after 2 failures: a 4xx is not the back-end failing.
    proc = await sidecar_factory({"processing": {"breaker_min_requests": 2, "breaker_failure_ratio": 0.5,
                                                 "breaker_open_seconds": 30}})
    crew.fail_next(3, 400)
    rejected = [chatwoot.open_conversation("facebook") for _ in range(3)]
    for conv in rejected:
        await chatwoot.customer_says(conv, "Olá")
        await wait_until(lambda c=conv: [j["state"] for j in jobs(proc, c.display_id)] == ["dead"],
                         what="dead letter")
    for conv in rejected:
        [job] = jobs(proc, conv.display_id)
        assert job["attempts"] == 1 and "HTTP 400" in job["last_error"]
        [note] = chatwoot.notes(conv.display_id)
        assert "HTTP 400" in (note or "")
        assert chatwoot.replies(conv.display_id) == []
    dead = proc.query(lambda s: s.dead_letters())
    assert len(dead) == 3 and all("HTTP 400" in d.reason for d in dead)  # what the console shows
    assert len(crew.crew_requests()) == 3  # one attempt each, never retried
    # The breaker stayed closed: the next conversation goes straight through.
    ok = chatwoot.open_conversation("facebook")
    await chatwoot.customer_says(ok, "Olá de novo")
    await chatwoot.wait_for(lambda: len(chatwoot.replies(ok.display_id)) == 1)
    assert not [j for j in jobs(proc) if j["last_error"] == "circuit breaker open"]


@pytest.mark.slow
async def test_circuit_breaker_opens_defers_without_attempts_probes_and_closes(
    sidecar_factory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    open_seconds = 1.0
    proc = await sidecar_factory({"processing": {
        "breaker_min_requests": 4, "breaker_failure_ratio": 0.7, "breaker_open_seconds": open_seconds,
        "max_attempts": 10, "concurrency": 1, "retry_base_seconds": 0.05, "retry_max_seconds": 0.1}})
    crew.fail_next(5, 503)  # 4 failures open it; the first probe fails too and re-opens it
    convs = [chatwoot.open_conversation("whatsapp") for _ in range(3)]
    for conv in convs:
        await chatwoot.customer_says(conv, "Qual o horário?")

    await wait_until(lambda: any(j["last_error"] == "circuit breaker open" for j in jobs(proc)),
                     what="a job deferred by the open breaker")
    status, doc = await health(proc)
    states = breaker_states(doc)  # checks.backends.<name>.breaker.state
    assert states is not None and "open" in states.values(), doc
    assert status == 200 and doc["status"] == "degraded"  # intake still works
    # The console reads the same state from the kv snapshot the prober writes.
    await wait_until(lambda: "open" in (breaker_states(proc.query(lambda s: s.documents.get("health.snapshot")) or {})
                                        or {}).values(), what="the open breaker in health.snapshot")

    await wait_until(lambda: open_jobs(proc) == 0, timeout=30, what="drained after the breaker closed")
    requests = [r for r in crew.requests if r.kind == "crew"]
    assert len(requests) == 5 + 3
    times = [r.at for r in requests]
    assert times[4] - times[3] >= open_seconds - 0.05, "a request went out while the breaker was open"
    assert times[5] - times[4] >= open_seconds - 0.05, "the failed probe did not re-open the breaker"
    # Deferrals used no attempts: every counted attempt is a request the crew received.
    assert sum(j["attempts"] for j in jobs(proc)) == len(requests)
    assert len(rows(proc, "SELECT * FROM crew_attempts")) == len(requests)
    assert all(j["state"] == "done" for j in jobs(proc))
    for conv in convs:
        assert len(chatwoot.replies(conv.display_id)) == 1
    assert len(crew.unique_requests()) == 3 and crew.duplicates == 0
    status, doc = await health(proc)
    states = breaker_states(doc)
    assert states is not None and set(states.values()) == {"closed"}, states
    assert status == 200
