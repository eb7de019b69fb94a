"""Hand-off races: once a human has the conversation (or it is resolved), a crew answer that
was already being computed is dropped, never posted. Plus duplicate async callbacks."""

from __future__ import annotations

import pytest

from simulators import FakeChatwoot, FakeCrew
from tests.reliability.helpers import jobs, open_jobs
from tests.waiting import wait_until


@pytest.mark.parametrize("interruption", ["agent_replies", "resolved"])
async def test_crew_answer_is_not_posted_after_a_human_took_over(
    sidecar_factory, chatwoot: FakeChatwoot, crew: FakeCrew, interruption: str
) -> None:
    proc = await sidecar_factory()
    crew.latency = 1.0
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "Quero falar sobre meu pedido")
    await crew.wait_for(lambda: len(crew.crew_requests()) == 1)
    if interruption == "agent_replies":
        status, _ = await chatwoot.agent_says(conv, "Oi, aqui é a Ana, vou te ajudar.")
    else:
        status, _ = await chatwoot.resolve(conv)
    assert status == 200
    await crew.wait_for(lambda: len(crew.unique_requests()) == 1)  # the crew did answer
    await wait_until(lambda: open_jobs(proc) == 0, what="job finished")

    [job] = jobs(proc)
    assert job["state"] == "cancelled" and "not posted" in job["last_error"], job["last_error"]
    assert chatwoot.replies(conv.display_id) == []
    assert chatwoot.calls("messages") == []  # nothing posted at all, not even a note
    assert len(crew.crew_requests()) == 1 and crew.duplicates == 0


async def test_duplicate_async_callbacks_apply_once(sidecar_factory, chatwoot: FakeChatwoot, crew: FakeCrew) -> None:
    proc = await sidecar_factory()
    crew.mode = "async"
    crew.double_callback = True
    conv = chatwoot.open_conversation("webwidget")
    await chatwoot.customer_says(conv, "Qual o horário?")
    await crew.wait_for(lambda: len(crew.callbacks_sent) == 2)
    await wait_until(lambda: [j["state"] for j in jobs(proc)] == ["done"], what="job done")
    assert [c["status"] for c in crew.callbacks_sent] == [200, 200]
    assert [c["body"]["status"] for c in crew.callbacks_sent] == ["applied", "duplicate"]
    assert len(chatwoot.replies(conv.display_id)) == 1
    assert len(crew.unique_requests()) == 1 and len(crew.crew_requests()) == 1
