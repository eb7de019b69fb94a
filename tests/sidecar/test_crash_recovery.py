"""kill -9 in the middle of a stream of webhooks: every 2xx is answered exactly once after restart."""

from __future__ import annotations

import asyncio

from simulators import FakeChatwoot, FakeCrew
from tests.conftest import ProcessFactory
from tests.waiting import wait_until


async def test_kill_9_mid_stream_then_restart_answers_every_accepted_webhook_once(
    process_factory: ProcessFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    sidecar = await process_factory()
    crew.latency = 0.05  # keep some requests in flight when the kill lands
    # A user token: when the kill lands between a reply's create call and its echo, the echo
    # is lost with the process and only the message list can prove the reply exists. (With an
    # agent-bot token that window may post twice: docs/reliability.md, "the echo grace".)
    chatwoot.token_kind = "user"
    conversations = [chatwoot.open_conversation(("whatsapp", "facebook", "webwidget")[i % 3]) for i in range(40)]
    statuses: dict[int, int] = {}
    killed = asyncio.Event()

    async def send(i: int) -> None:
        conv = conversations[i]
        try:
            status, _ = await chatwoot.customer_says(conv, f"mensagem {i}")
        except Exception:  # noqa: BLE001 - a refused connection is an expected outcome here
            status = 0
        statuses[conv.display_id] = status

    tasks = []
    for i in range(40):
        tasks.append(asyncio.create_task(send(i)))
        await asyncio.sleep(0.01)  # a steady stream, not a burst
        if i == 20:
            await sidecar.kill()
            killed.set()
    await asyncio.gather(*tasks)
    assert killed.is_set()
    accepted = {cid for cid, status in statuses.items() if status == 200}
    assert 5 <= len(accepted) < 40

    await sidecar.start()
    await chatwoot.wait_for(lambda: all(len(chatwoot.replies(cid)) >= 1 for cid in accepted), timeout=30)
    await wait_until(lambda: sidecar.query(lambda s: s.jobs.stats().depth) == 0, timeout=30, what="queue drained")
    for conv in conversations:
        replies = chatwoot.replies(conv.display_id)
        if conv.display_id in accepted:
            assert len(replies) == 1, (conv.display_id, replies)
        else:
            # Committed but never acknowledged (killed between COMMIT and the answer): at most once.
            assert len(replies) <= 1
    integrity = sidecar.integrity_check()
    assert integrity == "ok"
