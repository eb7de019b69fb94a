"""GET /webhook/status: last delivery, counts by outcome, queue depth, last rejection."""

from __future__ import annotations

import time

from simulators import FakeChatwoot
from tests.conftest import SidecarFactory
from tests.harness import SECRET, InProcessSidecar
from tests.waiting import wait_until

OUTCOMES = {"accepted", "ignored", "duplicate", "failed", "rejected_signature", "rejected_malformed"}


async def test_counts_every_outcome_and_names_the_last_rejection(
    sidecar: InProcessSidecar, chatwoot: FakeChatwoot
) -> None:
    status, empty, _ = await sidecar.client.get("/webhook/status")
    assert status == 200
    assert empty["last_delivery_at"] is None and empty["last_rejection"] is None
    assert empty["counts"] == dict.fromkeys(OUTCOMES, 0)

    conv = chatwoot.open_conversation("whatsapp")
    started = time.time()
    assert (await chatwoot.customer_says(conv, "oi", delivery_id="d-1"))[1]["status"] == "accepted"
    assert (await chatwoot.customer_says(conv, "oi de novo", delivery_id="d-1"))[1]["status"] == "duplicate"
    assert (await chatwoot.agent_says(conv, "nota interna", private=True))[0] == 200
    await sidecar.outcome(chatwoot.webhook_results[-1][0])  # counted once applied
    status, _ = await chatwoot.send_event({"event": "message_created"}, secret="not-the-secret-at-all")
    assert status == 401
    status, _ = await chatwoot.send_event(None, raw_body=b"{not json", delivery_id="d-bad")
    assert status == 400

    status, body, raw = await sidecar.client.get("/webhook/status")
    assert status == 200
    counts = body["counts"]
    assert counts["accepted"] == 1 and counts["duplicate"] == 1
    assert counts["ignored"] >= 1
    assert counts["rejected_signature"] == 1 == body["signature_failures"]
    assert counts["rejected_malformed"] == 1
    assert body["last_delivery_at"] >= started
    assert body["last_rejection"]["outcome"] == "rejected_malformed"
    assert body["last_rejection"]["status"] == 400
    assert body["last_rejection"]["reason"] == "body is not valid UTF-8 JSON"
    assert body["last_rejection"]["delivery_id"] == "d-bad"
    assert "{not json" not in raw and SECRET not in raw and "not-the-secret-at-all" not in raw
    assert set(body["queue"]) >= {"depth", "pending", "in_flight", "waiting", "dead_letters", "oldest_pending_age",
                                  "unapplied", "oldest_unapplied_age"}
    # Once everything received is applied, nothing shows as unapplied. (Waited for: the crew's
    # reply comes back from Chatwoot as another webhook, which may be journaled but not yet
    # applied at the read above.)
    async def queue() -> dict:
        return (await sidecar.client.get("/webhook/status"))[1]["queue"]

    await wait_until(queue, until=lambda q: q["unapplied"] == 0 and q["oldest_unapplied_age"] is None,
                     what="no unapplied delivery")


async def test_queue_depth_shows_waiting_work(sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot) -> None:
    proc = await sidecar_factory({"processing": {"workers_enabled": False}})
    for _ in range(3):
        await chatwoot.customer_says(chatwoot.open_conversation("facebook"), "olá")
    await proc.outcome(chatwoot.webhook_results[-1][0])  # queued once applied (in arrival order)
    status, body, _ = await proc.client.get("/webhook/status")
    assert status == 200
    assert body["queue"]["depth"] == 3 and body["queue"]["pending"] == 3
    assert body["queue"]["oldest_pending_age"] >= 0


async def test_last_delivery_and_counts_survive_a_restart(sidecar: InProcessSidecar, chatwoot: FakeChatwoot) -> None:
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "oi")
    # The bot's reply comes back as a webhook too (a later last delivery): compare after it.
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)
    await chatwoot.echoes_delivered()
    _, before, _ = await sidecar.client.get("/webhook/status")
    await sidecar.stop()
    await sidecar.start()

    async def status() -> dict:
        return (await sidecar.client.get("/webhook/status"))[1]

    after = await wait_until(status, until=lambda b: b["counts"]["accepted"] == 1, what="counts after restart")
    assert after["last_delivery_at"] == before["last_delivery_at"]
