"""The reply poster on its own: each step's intent is committed before its Chatwoot call, a create
call that may have reached Chatwoot is checked for evidence before anything is posted again, and
an answer overtaken by a newer customer message is not posted. Real SQLite state and a fake
Chatwoot on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from sidecar.inbound.apply import ApplySettings, apply_pending, journal
from sidecar.inbound.payload import peek
from simulators import FakeChatwoot, FakeCrew
from simulators.payloads import message_event
from state import Job
from tests.sidecar.parts import WORKER, Parts, build_config, customer_writes, wired
from tests.waiting import wait_until


async def answered(parts: Parts, job_id: int, actions: list[dict[str, Any]]) -> Job:
    """The job as the queue worker leaves it for the poster: claimed by it, the crew's answer stored."""
    def write(tx: Any) -> Job:
        now = time.time()
        # now + 60: also takes a job the poster parked a moment ago (as the worker would, later).
        assert job_id in [j.id for j in tx.jobs.claim(WORKER, now + 60, 60, 10)]
        assert tx.jobs.store_actions(job_id, WORKER, actions, now)
        return tx.jobs.get(job_id)

    return await parts.state.write(write)


async def test_every_step_is_committed_before_its_chatwoot_call(tmp_path: Path, chatwoot: FakeChatwoot,
                                                                crew: FakeCrew) -> None:
    """While Chatwoot is still handling the create call, another connection already sees the
    step's intent row; afterwards each step is done, the message with Chatwoot's id."""
    async with wired(build_config(tmp_path, chatwoot, crew)) as parts:
        conv = chatwoot.open_conversation("webwidget")
        job_id = await customer_writes(parts, chatwoot, conv, "Quero comprar")
        job = await answered(parts, job_id, [{"type": "reply", "content": "Claro! Qual produto?"},
                                             {"type": "labels", "add": ["lead"]}])
        chatwoot.delay_next("messages", 1.0)
        posting = asyncio.create_task(parts.poster.apply(job))
        await chatwoot.wait_for(lambda: len(chatwoot.calls("messages")) == 1)  # the call is in Chatwoot
        during = parts.query(lambda tx: tx.effects.get(job_id, 0))
        assert during is not None and (during.kind, during.state) == ("message", "started")
        assert await posting == "done"
        steps = parts.query(lambda tx: [tx.effects.get(job_id, 0), tx.effects.get(job_id, 1)])
        assert parts.job(job_id).state == "done" and parts.finished
    [stored] = [m for m in chatwoot.messages_in(conv.display_id) if m.get("content") == "Claro! Qual produto?"]
    assert [(s.kind, s.state) for s in steps] == [("message", "done"), ("labels", "done")]
    assert steps[0].chatwoot_message_id == stored["id"]
    assert chatwoot.labels_of(conv.display_id) == ["lead"]


async def test_after_a_dropped_create_the_message_list_is_the_evidence(tmp_path: Path, chatwoot: FakeChatwoot,
                                                                        crew: FakeCrew) -> None:
    """Chatwoot stored the reply but the connection dropped before its answer: the job is parked,
    and the next try finds the message in Chatwoot's list (a user token may list) instead of
    posting it again."""
    chatwoot.token_kind = "user"
    async with wired(build_config(tmp_path, chatwoot, crew)) as parts:
        conv = chatwoot.open_conversation("whatsapp")
        job_id = await customer_writes(parts, chatwoot, conv, "Chegou meu pedido?")
        chatwoot.drop_after_store_next(1)
        job = await answered(parts, job_id, [{"type": "reply", "content": "Chegou sim, ontem."}])
        assert await parts.poster.apply(job) == "parked"
        parked = parts.job(job_id)
        assert (parked.state, parked.apply_attempts) == ("pending", 1)
        assert parts.query(lambda tx: tx.effects.get(job_id, 0)).state == "started"  # maybe sent

        assert await parts.poster.apply(await answered(parts, job_id, list(job.actions or ()))) == "done"
        record = parts.query(lambda tx: tx.effects.get(job_id, 0))
    assert chatwoot.replies(conv.display_id) == ["Chegou sim, ontem."]
    assert len(chatwoot.calls("messages")) == 1  # one create, never repeated
    assert chatwoot.calls("messages", method="GET"), "the message list was consulted"
    [stored] = [m for m in chatwoot.messages_in(conv.display_id) if m.get("content") == "Chegou sim, ontem."]
    assert (record.state, record.chatwoot_message_id) == ("done", stored["id"])


async def test_without_evidence_a_bot_token_waits_instead_of_posting_again(
    tmp_path: Path, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    """An agent-bot token may not list messages and the echo has not come: within the echo grace
    the poster parks the job again rather than risk a second copy."""
    async with wired(build_config(tmp_path, chatwoot, crew, {"processing": {"echo_grace_seconds": 60}})) as parts:
        conv = chatwoot.open_conversation("whatsapp")
        job_id = await customer_writes(parts, chatwoot, conv, "Oi")
        chatwoot.drop_after_store_next(1)
        job = await answered(parts, job_id, [{"type": "reply", "content": "Olá! Como posso ajudar?"}])
        assert await parts.poster.apply(job) == "parked"
        assert await parts.poster.apply(await answered(parts, job_id, list(job.actions or ()))) == "parked"
        waiting = parts.job(job_id)
    assert waiting.state == "pending" and waiting.run_at > time.time() + 30  # until the grace is over
    assert "echo" in waiting.last_error
    assert len(chatwoot.calls("messages")) == 1 and len(chatwoot.replies(conv.display_id)) == 1


async def test_an_answer_overtaken_by_a_newer_message_is_not_posted(tmp_path: Path, chatwoot: FakeChatwoot,
                                                                   crew: FakeCrew) -> None:
    """The customer wrote again while the crew was answering: the old answer is superseded, nothing
    is posted, and its messages move to the newer burst (one request answers both)."""
    async with wired(build_config(tmp_path, chatwoot, crew)) as parts:
        conv = chatwoot.open_conversation("instagram")
        older_id = await customer_writes(parts, chatwoot, conv, "Tem a barraca azul?")
        job = await answered(parts, older_id, [{"type": "reply", "content": "Temos sim!"}])
        newer_id = await customer_writes(parts, chatwoot, conv, "Ah, e a verde?")
        assert newer_id != older_id
        assert await parts.poster.apply(job) == "superseded"
        older, newer = parts.job(older_id), parts.job(newer_id)
    assert chatwoot.calls("messages") == [] and chatwoot.replies(conv.display_id) == []
    assert older.state == "superseded" and f"job {newer_id}" in older.last_error
    assert newer.state == "pending" and set(older.message_ids) <= set(newer.message_ids)


async def test_a_refused_create_is_retried_later_without_evidence(tmp_path: Path, chatwoot: FakeChatwoot,
                                                                  crew: FakeCrew) -> None:
    """Chatwoot answered 500 ("not created"): the intent row is dropped and the job parked, so the
    next try posts at once, without waiting for evidence."""
    async with wired(build_config(tmp_path, chatwoot, crew)) as parts:
        conv = chatwoot.open_conversation("facebook")
        job_id = await customer_writes(parts, chatwoot, conv, "Bom dia")
        chatwoot.fail_next("messages", 1, 500)
        job = await answered(parts, job_id, [{"type": "reply", "content": "Bom dia! Em que posso ajudar?"}])
        assert await parts.poster.apply(job) == "parked"
        assert parts.query(lambda tx: tx.effects.get(job_id, 0)) is None
        assert await parts.poster.apply(await answered(parts, job_id, list(job.actions or ()))) == "done"
        await wait_until(lambda: parts.job(job_id).state == "done", what="the job done")
    assert len(chatwoot.calls("messages")) == 2
    assert chatwoot.replies(conv.display_id) == ["Bom dia! Em que posso ajudar?"]


async def test_an_echo_received_in_time_but_not_yet_applied_is_waited_for(
    tmp_path: Path, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    """The grace is for the echo's arrival: Chatwoot's echo of a reply whose create call dropped
    was journaled within the grace but not applied yet (the journal applier is another process,
    late on a loaded machine). Past the grace the poster still waits for it instead of posting a
    second copy, and once it is applied the reply counts as posted, with Chatwoot's id."""
    async with wired(build_config(tmp_path, chatwoot, crew, {"processing": {"echo_grace_seconds": 1}})) as parts:
        conv = chatwoot.open_conversation("whatsapp")
        job_id = await customer_writes(parts, chatwoot, conv, "Oi")
        chatwoot.drop_after_store_next(1)
        job = await answered(parts, job_id, [{"type": "reply", "content": "Olá! Em que posso ajudar?"}])
        assert await parts.poster.apply(job) == "parked"
        started_at = parts.query(lambda tx: tx.effects.get(job_id, 0)).started_at
        [echo] = [m for m in conv.messages if m.content == "Olá! Em que posso ajudar?"]
        body = json.dumps(message_event(conv, echo))

        def journal_echo(tx: Any) -> None:  # acknowledged inside the grace, not applied
            journal(tx, peek(json.loads(body)), body_text=body, delivery_id=str(uuid.uuid4()), now=started_at + 0.5)

        await parts.state.write(journal_echo)
        await wait_until(lambda: time.time() > started_at + 1.2, what="the echo grace over")
        assert await parts.poster.apply(await answered(parts, job_id, list(job.actions or ()))) == "parked"
        assert len(chatwoot.calls("messages")) == 1  # not posted again

        settings = ApplySettings(inbox_ids=(), debounce_seconds=0.0, debounce_max_seconds=0.0,
                                 self_user_ids=())
        await parts.state.write(lambda tx: apply_pending(tx, settings, limit=10))
        assert await parts.poster.apply(await answered(parts, job_id, list(job.actions or ()))) == "done"
        record = parts.query(lambda tx: tx.effects.get(job_id, 0))
    assert len(chatwoot.calls("messages")) == 1 and chatwoot.replies(conv.display_id) == ["Olá! Em que posso ajudar?"]
    assert record.state == "done" and record.chatwoot_message_id == echo.id


async def test_a_worker_paused_past_its_lease_during_the_last_call_says_so_and_ends_nothing(
    tmp_path: Path, chatwoot: FakeChatwoot, crew: FakeCrew, caplog: pytest.LogCaptureFixture
) -> None:
    """While the reply's create call is in Chatwoot, the lease expires and another worker claims
    the job: the first poster's finish is refused, it says so (``job.lease_lost step=finish``),
    and the job stays with its new owner."""
    async with wired(build_config(tmp_path, chatwoot, crew)) as parts:
        conv = chatwoot.open_conversation("webwidget")
        job_id = await customer_writes(parts, chatwoot, conv, "Vocês entregam no sábado?")
        job = await answered(parts, job_id, [{"type": "reply", "content": "Entregamos sim."}])
        chatwoot.delay_next("messages", 1.0)
        posting = asyncio.create_task(parts.poster.apply(job))
        await chatwoot.wait_for(lambda: len(chatwoot.calls("messages")) == 1)  # the call is in Chatwoot

        def take_over(tx: Any) -> list[int]:
            return [j.id for j in tx.jobs.claim("another-worker", time.time() + 3600, 60, 10)]

        assert await parts.state.write(take_over) == [job_id]
        assert await posting == "lost"
        taken = parts.job(job_id)
    assert (taken.state, taken.lease_owner) == ("in_flight", "another-worker")
    assert [r.fields for r in caplog.records if r.getMessage() == "job.lease_lost"] == [  # type: ignore[attr-defined]
        {"job": job_id, "step": "finish"}]
