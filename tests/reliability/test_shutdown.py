"""R4: SIGTERM under load. Requests being served are answered, leases are released, the exit
status is 0, and the next start answers everything exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import pytest

from simulators import FakeChatwoot, FakeCrew
from tests.conftest import ProcessFactory
from tests.reliability.helpers import (
    Ledger,
    fresh_session,
    jobs,
    open_jobs,
    post_delivery,
    rows,
    signed_delivery,
    stored_delivery_ids,
)
from tests.waiting import wait_until


async def _listener_closed(port: int, timeout: float = 30.0) -> None:
    """Waits until connecting is refused (Sanic has closed its listening socket)."""
    async def probe() -> None:
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                return
            writer.close()
            await asyncio.sleep(0.05)

    await asyncio.wait_for(probe(), timeout)


@pytest.mark.slow
async def test_sigterm_under_load_answers_in_flight_releases_leases_and_restarts_cleanly(
    process_factory: ProcessFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    proc = await process_factory({
        "mcp_crew": {"timeout_seconds": 30},  # hung crew calls outlive the 4 s grace: released, not failed
        "server": {"request_timeout_seconds": 40, "shutdown_grace_seconds": 4},
        "processing": {"concurrency": 4},
    })
    crew.hang_next(4)
    hung = [chatwoot.open_conversation("whatsapp") for _ in range(4)]
    queued = [chatwoot.open_conversation("webwidget") for _ in range(3)]
    for conv in (*hung, *queued):
        status, body = await chatwoot.customer_says(conv, "Oi, preciso de ajuda")
        assert (status, body["status"]) == (200, "accepted")
    await crew.wait_for(lambda: len(crew.crew_requests()) == 4)

    # Requests being served at SIGTERM: headers and half the body already sent.
    partial = []
    for _ in range(5):
        conv = chatwoot.open_conversation("facebook")
        delivery, body, headers = signed_delivery(chatwoot, conv, "mensagem em trânsito")
        reader, writer = await asyncio.open_connection("127.0.0.1", proc.port)
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(f"POST /webhook/chatwoot HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{head}\r\n"
                     .encode() + body[: len(body) // 2])
        await writer.drain()
        partial.append((conv, delivery, body, reader, writer))

    # Open-loop load: a new conversation every 0.1 s, one connection per request.
    ledger, load_convs = Ledger(), []
    stop_load = asyncio.Event()

    async def load() -> None:
        async with fresh_session() as session:
            pending: set[asyncio.Task[int | None]] = set()
            while not stop_load.is_set():
                conv = chatwoot.open_conversation("instagram")
                load_convs.append(conv)
                delivery, body, headers = signed_delivery(chatwoot, conv, "olá, alguém aí?")
                pending.add(asyncio.create_task(
                    post_delivery(session, proc.webhook_url, delivery, body, headers, ledger)))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop_load.wait(), 0.1)
            await asyncio.gather(*pending)

    load_task = asyncio.create_task(load())
    await wait_until(lambda: len(ledger.statuses) >= 5, what="load running")
    stopping = asyncio.create_task(proc.stop(signal.SIGTERM, timeout=40))
    await _listener_closed(proc.port)
    stop_load.set()

    for _, _, body, _reader, writer in partial:
        writer.write(body[len(body) // 2:])
        await writer.drain()
    answers = [await asyncio.wait_for(reader.read(), 10) for *_, reader, _ in partial]
    for *_, writer in partial:
        writer.close()
    assert await stopping == 0
    await load_task

    assert all(a.startswith(b"HTTP/1.1 200") for a in answers), [a[:40] for a in answers]
    statuses = set(ledger.statuses.values())
    assert statuses <= {200}, statuses  # never a 5xx or a half answer
    assert len(ledger.ok()) >= 5
    stored = stored_delivery_ids(proc)
    assert {d for _, d, *_ in partial} <= stored
    assert ledger.ok() <= stored  # every 2xx was committed
    # Nothing is left leased by the stopped worker; the hung requests were handed back.
    assert rows(proc, "SELECT id FROM jobs WHERE state='in_flight' OR lease_owner IS NOT NULL") == []
    assert any("queue.leases_released" in line and "4" in line for line in proc.output), proc.output[-20:]

    await proc.start()
    await wait_until(lambda: open_jobs(proc) == 0, timeout=60, what="everything answered after the restart")
    for conv in (*hung, *queued, *(p[0] for p in partial)):
        assert len(chatwoot.replies(conv.display_id)) == 1, conv.display_id
    all_jobs = jobs(proc)
    assert all(j["state"] == "done" for j in all_jobs), {j["state"] for j in all_jobs}
    for job in all_jobs:  # includes every conversation of the load that got a 2xx
        assert len(chatwoot.replies(job["conversation_id"])) == 1
    assert len(all_jobs) == len(hung) + len(queued) + len(partial) + len(ledger.ok())
    assert sorted(crew.unique_requests()) == sorted(j["request_id"] for j in all_jobs)
    assert crew.duplicates == 0
    hung_keys = {j["request_id"] for c in hung for j in jobs(proc, c.display_id)}
    resent = [r for r in crew.requests if r.kind == "crew" and r.headers.get("Idempotency-Key") in hung_keys]
    assert len(resent) == 8  # each hung request sent again once, under the same key
