"""Three sidecar processes on one PostgreSQL database, like replicas behind a proxy: 200
conversations with bursts, one replica ``kill -9``'d mid-run, another SIGSTOP'd past its lease and
resumed. Every accepted message is answered exactly once, in order per conversation, the stale
replica's writes are refused, and the queue ends with nothing in flight and nothing lost."""

from __future__ import annotations

import asyncio
import random
import re
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from simulators import FakeChatwoot, FakeCrew
from simulators.fake_crew import Action
from tests import backends
from tests.harness import SidecarProcess
from tests.reliability.helpers import Ledger, post_delivery, signed_delivery
from tests.waiting import wait_until

CONVERSATIONS = 200
LEASE_SECONDS = 2.0


def _answer(envelope: dict[str, Any]) -> list[Action]:
    """A reply that names the messages it answers (counted at the fake Chatwoot)."""
    ids = [m.get("id") for m in envelope.get("messages") or []]
    return [{"type": "reply", "content": "answer to " + ",".join(str(i) for i in ids)}]


def _answered(replies: list[str | None]) -> list[list[int]]:
    out = []
    for reply in replies:
        match = re.fullmatch(r"answer to ([\d,]+)", reply or "")
        assert match, reply
        out.append([int(x) for x in match.group(1).split(",")])
    return out


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_three_replicas_answer_every_message_once_through_a_kill_and_a_pause(
    process_factory, chatwoot: FakeChatwoot, crew: FakeCrew, tmp_path: Path
) -> None:
    url = backends.state_location(tmp_path / "shared", backends.POSTGRES)
    crew.responder = _answer
    crew.latency = 0.4  # jobs are in flight when a replica dies or stops
    overrides = {"state": {"database_url": url}, "processing": {"lease_seconds": LEASE_SECONDS}}
    replicas: list[SidecarProcess] = []
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
        replicas.append(await process_factory(overrides, workdir=tmp_path / name))
    a, b, c = replicas
    chatwoot.webhook_url = f"{a.url}/webhook/chatwoot"  # echoes of our replies go to a live one

    ledger = Ledger()
    accepted: dict[int, list[int]] = {}  # conversation -> customer message ids acknowledged, in order
    down: set[int] = set()
    rng = random.Random(14)
    conversations = [chatwoot.open_conversation(rng.choice(["whatsapp", "webwidget", "facebook"]))
                     for _ in range(CONVERSATIONS)]

    async def deliver(session: aiohttp.ClientSession, conv: Any, text: str, first: int) -> None:
        """One message, to the replicas in turn: a refused connection goes to the next (the proxy)."""
        delivery, body, headers = signed_delivery(chatwoot, conv, text)
        message_id = chatwoot.conversation(conv.display_id).messages[-1].id
        for i in range(len(replicas)):
            index = (first + i) % len(replicas)
            if index in down:
                continue
            status = await post_delivery(session, f"{replicas[index].url}/webhook/chatwoot", delivery, body,
                                         headers, ledger)
            if status == 200:
                accepted.setdefault(conv.display_id, []).append(message_id)
                return
            if status is not None:
                raise AssertionError(f"replica {index} answered {status}")
        raise AssertionError("no replica took the delivery")

    async def burst(session: aiohttp.ClientSession, n: int, conv: Any) -> None:
        for k in range(rng.randint(1, 3)):  # a burst: up to three messages in quick succession
            await deliver(session, conv, f"mensagem {k} da conversa {conv.display_id}", n + k)
            await asyncio.sleep(rng.choice([0.0, 0.05, 0.4]))  # inside or past the debounce

    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(force_close=True)) as session:
        async def wave(batch: list[Any], offset: int) -> None:
            await asyncio.gather(*(burst(session, offset + i, conv) for i, conv in enumerate(batch)))

        await wave(conversations[:60], 0)
        await c.kill()  # kill -9 while its jobs are in flight
        down.add(2)
        feeding = asyncio.create_task(wave(conversations[60:110], 60))
        assert b.proc is not None
        pid = b.proc.pid

        def b_holds_a_job() -> bool:
            return bool(a.query(lambda tx: tx.sql.scalar(
                "SELECT count(*) FROM jobs WHERE state='in_flight' AND lease_owner LIKE ?", (f"%:{pid}:%",))))

        while True:  # paused with leases held ...
            await wait_until(b_holds_a_job, timeout=30, interval=0.01, what="replica b holds a job")
            b.proc.send_signal(signal.SIGSTOP)
            if b_holds_a_job():  # (stopped, it cannot let go: only its lease's expiry can)
                break
            b.proc.send_signal(signal.SIGCONT)  # it finished that job between the check and the signal
        down.add(1)
        await feeding  # (deliveries it had taken wait for it: it answers them when it is resumed)
        await wave(conversations[110:170], 110)
        # ... until its leases expired and the other replicas took every job it held.
        await wait_until(lambda: not b_holds_a_job(), timeout=10 * LEASE_SECONDS + 30, interval=0.05,
                         what="the paused replica's jobs taken by the others")
        b.proc.send_signal(signal.SIGCONT)
        down.discard(1)
        await wave(conversations[170:], 170)

    assert sum(len(ids) for ids in accepted.values()) == len(ledger.ok())

    def settled() -> bool:
        backlog, stats = a.query(lambda tx: (tx.journal.backlog(), tx.jobs.stats()))  # (open_jobs says why)
        return stats.depth == 0 and backlog.unapplied == 0

    await wait_until(settled, timeout=120, interval=0.2, what="every accepted message handled")

    # Exactly once, and in order, per conversation: count the replies at the fake Chatwoot.
    jobs = a.query(lambda tx: tx.sql.all("SELECT * FROM jobs ORDER BY id"))
    assert {j["state"] for j in jobs} <= {"done", "superseded"}, {j["state"] for j in jobs}
    for conv_id, ids in accepted.items():
        answered = _answered(chatwoot.replies(conv_id))
        flat = [m for burst_ids in answered for m in burst_ids]
        assert sorted(flat) == sorted(ids), (conv_id, answered, ids)  # each message answered once
        assert flat == sorted(flat), (conv_id, answered)  # bursts answered in the order they came
        done = [j for j in jobs if j["conversation_id"] == conv_id and j["state"] == "done"]
        assert len(done) == len(answered)  # one reply per answered burst, never a second post

    # The paused replica came back to find its jobs taken: its writes were refused.
    # (Said once it runs again and tries: on a busy box that may come after the others settled.)
    await b.wait_for_output("job.lease_lost", timeout=60)
    # Integrity: nothing in flight, nothing pending, no lease left behind, every delivery applied.
    leftovers = a.query(lambda tx: tx.sql.scalar(
        "SELECT count(*) FROM jobs WHERE lease_owner IS NOT NULL OR state IN ('pending','in_flight','waiting')"))
    assert leftovers == 0
    assert a.query(lambda tx: tx.journal.counts()).keys() <= {"accepted", "ignored"}
