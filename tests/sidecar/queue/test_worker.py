"""The queue worker on its own: the claim commits everything a crew request needs before it goes
out, leases are renewed while a crew works and handed back on stop, and a job whose preparation
fails is retried. Real SQLite state, a fake MCP-Crew and a fake Chatwoot on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from sidecar.queue.worker import QueueWorker
from simulators import FakeChatwoot, FakeCrew
from simulators.fake_crew import default_responder
from tests.sidecar.parts import WORKER, build_config, customer_writes, wired
from tests.waiting import wait_until


@asynccontextmanager
async def running(worker: QueueWorker, grace_seconds: float = 5.0) -> AsyncIterator[QueueWorker]:
    """The worker's loop as a task, stopped (held jobs finish or are released) afterwards."""
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        await worker.stop(grace_seconds=grace_seconds)
        await asyncio.wait_for(task, 10)


async def test_the_claim_commits_route_envelope_and_attempt_before_the_crew_is_asked(
    tmp_path: Path, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    """While the crew works on the request, another connection already sees the job leased, its
    attempt counted, its route decided and the exact request body stored: a retry after a crash
    sends the same bytes under the same Idempotency-Key."""
    async with wired(build_config(tmp_path, chatwoot, crew)) as parts:
        conv = chatwoot.open_conversation("whatsapp")
        job_id = await customer_writes(parts, chatwoot, conv, "Qual o horário de atendimento?")
        seen: dict[str, Any] = {}

        def responder(envelope: dict[str, Any]) -> list[dict[str, Any]]:
            seen["job"] = parts.job(job_id)
            seen["decisions"] = parts.query(lambda tx: tx.decisions.recent())
            return default_responder(envelope)

        crew.responder = responder
        async with running(parts.worker()):
            await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)
            await wait_until(lambda: parts.job(job_id).state == "done", what="the job done")

    job = seen["job"]
    assert (job.state, job.lease_owner, job.attempts) == ("in_flight", WORKER, 1)
    assert (job.crew, job.route_source) == ("whatsapp_crew", "rules")
    [request] = [r for r in crew.requests if r.kind == "crew"]
    assert job.envelope == request.body
    assert request.headers["Idempotency-Key"] == job.request_id
    [decision] = seen["decisions"]
    assert (decision.job_id, decision.crew, decision.source) == (job_id, "whatsapp_crew", "rules")


async def test_leases_are_renewed_while_the_crew_works(tmp_path: Path, chatwoot: FakeChatwoot,
                                                       crew: FakeCrew) -> None:
    """A crew slower than the lease: the lease keeps moving forward, so no other worker may take
    the job meanwhile, and the crew is asked once."""
    lease = 0.9
    overrides = {"processing": {"lease_seconds": lease}, "mcp_crew": {"timeout_seconds": 30}}
    async with wired(build_config(tmp_path, chatwoot, crew, overrides)) as parts:
        crew.latency = 4 * lease
        conv = chatwoot.open_conversation("whatsapp")
        job_id = await customer_writes(parts, chatwoot, conv, "Meu pedido atrasou")
        async with running(parts.worker()):
            await crew.wait_for(lambda: len(crew.crew_requests()) == 1)
            first = parts.job(job_id).lease_expires_at
            assert first is not None
            await wait_until(lambda: (parts.job(job_id).lease_expires_at or 0) > first + lease / 2,
                             what="the lease renewed")
            # Past the first lease's end another worker still finds nothing to take.
            await wait_until(lambda: time.time() > first, what="the first lease's end")
            assert await parts.state.write(lambda tx: tx.jobs.claim("another-worker", time.time(), 60, 10)) == []
            await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)
        assert len(crew.crew_requests()) == 1


async def test_stop_hands_held_jobs_back_at_once(tmp_path: Path, chatwoot: FakeChatwoot, crew: FakeCrew) -> None:
    """A job whose crew hangs when the worker stops is released (not left leased until the lease
    runs out); the next worker sends the same request and the customer is answered once."""
    async with wired(build_config(tmp_path, chatwoot, crew, {"processing": {"lease_seconds": 60}})) as parts:
        crew.hang_next(1)
        conv = chatwoot.open_conversation("webwidget")
        job_id = await customer_writes(parts, chatwoot, conv, "Vocês entregam no sábado?")
        async with running(parts.worker(), grace_seconds=0.2):
            await crew.wait_for(lambda: len(crew.crew_requests()) == 1)
        released = parts.job(job_id)
        assert (released.state, released.lease_owner) == ("pending", None)
        async with running(parts.worker("next-worker")):
            await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)
        first, second = [r for r in crew.requests if r.kind == "crew"]
        assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"] == released.request_id
        assert first.body == second.body


@pytest.mark.sqlite_only  # the fault is injected with a SQLite trigger
async def test_a_job_whose_preparation_fails_is_retried_until_it_can_be_prepared(
    tmp_path: Path, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    """An outside change to the database (a trigger refusing routing decisions) makes preparing
    the job fail: the claim is kept, the job is scheduled again with the error, the crew is not
    asked; once the trigger is gone the next try answers the customer."""
    async with wired(build_config(tmp_path, chatwoot, crew)) as parts:
        conv = chatwoot.open_conversation("facebook")
        job_id = await customer_writes(parts, chatwoot, conv, "Quanto custa a barraca?")
        outside = sqlite3.connect(parts.db_path, timeout=10)
        outside.execute("CREATE TRIGGER hold_decisions BEFORE INSERT ON routing_decisions "
                        "BEGIN SELECT RAISE(ABORT, 'routing is frozen for now'); END")
        outside.commit()
        try:
            async with running(parts.worker()):
                failed = await wait_until(lambda: parts.job(job_id), until=lambda j: j.last_error.startswith(
                    "internal error"), what="the failed preparation recorded")
                # Scheduled again: resting until its retry, or (a busy box polls late) already
                # claimed for it; either way no crew attempt was used.
                assert failed.state in ("pending", "in_flight") and failed.attempts == 0
                assert failed.run_at > failed.created_at
                assert crew.crew_requests() == []
                outside.execute("DROP TRIGGER hold_decisions")
                outside.commit()
                await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)
                done = await wait_until(lambda: parts.job(job_id), until=lambda j: j.state == "done",
                                        what="the job done")
        finally:
            outside.close()
    assert done.attempts == 1 and len(crew.crew_requests()) == 1
    assert json.loads(done.envelope_json or "{}")["crew"] == "facebook_crew"
