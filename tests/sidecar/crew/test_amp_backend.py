"""End to end through the real sidecar: a crew deployed on (fake) CrewAI AMP."""

from __future__ import annotations

import aiohttp

from simulators import FakeChatwoot
from simulators.fake_amp import FakeAmp
from tests.conftest import SidecarFactory
from tests.sidecar.crew.conftest import crews, finished_job, jobs_of


def amp_crew(amp: FakeAmp, **extra: object) -> dict[str, object]:
    return {"backend": "crewai_amp", "url": amp.url, "token": amp.token, "timeout_seconds": 3,
            "poll_interval_seconds": 0.1, "deadline_seconds": 20, **extra}


async def test_kickoff_then_completion_by_callback(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, amp: FakeAmp
) -> None:
    """AMP calls the sidecar's crewWebhookUrl when the crew is done; the sidecar confirms with
    GET /status and answers at once (polling is far too slow here to be the one answering)."""
    amp.callback = True
    proc = await sidecar_factory(crews(whatsapp_crew=amp_crew(amp, poll_interval_seconds=60)))
    conv = chatwoot.open_conversation("whatsapp", contact_name="Ana Souza")
    await chatwoot.customer_says(conv, "Quanto custa a barraca?")

    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)
    assert "R$ 899,90" in (chatwoot.replies(conv.display_id)[0] or "")
    [run] = amp.runs.values()
    assert run.callback_status == 200
    assert run.headers["Authorization"] == f"Bearer {amp.token}"
    inputs, meta = run.body["inputs"], run.body["meta"]
    assert all(isinstance(value, str) for value in inputs.values())
    assert inputs["message"] == "Quanto custa a barraca?" and inputs["contact_name"] == "Ana Souza"
    assert inputs["channel"] == "whatsapp" and inputs["conversation_id"] == str(conv.display_id)
    job = await finished_job(proc, conv.account.id, conv.display_id)
    assert meta["request_id"] == job.request_id == inputs["request_id"]
    assert run.body["crewWebhookUrl"].startswith(f"{proc.url}/webhook/crewai/{job.request_id}/")
    assert job.external_id == run.kickoff_id
    await proc.wait_for_output("outcome=applied")


async def test_forged_callback_url_is_refused(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, amp: FakeAmp
) -> None:
    """Only the URL the sidecar issued works: another token for the same request is a 404."""
    amp.never_finish = True
    proc = await sidecar_factory(crews(whatsapp_crew=amp_crew(amp, poll_interval_seconds=60)))
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "Oi")
    await amp.wait_for(lambda: len(amp.runs) == 1)
    [run] = amp.runs.values()
    genuine = run.body["crewWebhookUrl"]
    forged = genuine.rsplit("/", 1)[0] + "/" + "0" * 64
    async with aiohttp.ClientSession() as http:
        async with http.post(forged, json={"kickoff_id": run.kickoff_id}) as resp:
            assert resp.status == 404
        async with http.post(f"{proc.url}/webhook/crewai/no-such-request/{'0' * 64}", json={}) as resp:
            assert resp.status == 404
        async with http.post(genuine, json={}) as resp:  # genuine, but the run is still going
            assert resp.status == 200 and (await resp.json())["status"] in ("running", "noted")
    assert chatwoot.replies(conv.display_id) == []


async def test_kickoff_then_completion_by_polling(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, amp: FakeAmp
) -> None:
    """No callback: GET /status/{id} says running twice, then completed with result.output."""
    amp.polls_before_done = 2
    proc = await sidecar_factory(crews(whatsapp_crew=amp_crew(amp)))
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "Onde está meu pedido?")

    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)
    assert "saiu para entrega" in (chatwoot.replies(conv.display_id)[0] or "")
    [run] = amp.runs.values()
    assert amp.status_reads == [f"/status/{run.kickoff_id}"] * 3
    job = await finished_job(proc, conv.account.id, conv.display_id)
    assert job.attempts == 1


async def test_state_variant_and_legacy_status_path(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, amp: FakeAmp
) -> None:
    """``state`` STARTED/SUCCESS with ``result`` as plain text, served only at /{id}/status."""
    amp.shape, amp.legacy_path, amp.output, amp.polls_before_done = "state", True, "text", 1
    await sidecar_factory(crews(whatsapp_crew=amp_crew(amp)))
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "Que horas vocês abrem?")

    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)
    assert chatwoot.replies(conv.display_id) == ["Atendemos de segunda a sábado, das 8h às 18h."]
    [run] = amp.runs.values()
    # The new path is tried first, the old one found, and then used directly.
    assert amp.status_reads == [f"/status/{run.kickoff_id}", f"/{run.kickoff_id}/status",
                                f"/{run.kickoff_id}/status"]


async def test_422_is_a_configuration_error_not_retried(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, amp: FakeAmp
) -> None:
    """The crew needs an input the sidecar does not send: one attempt, then the failure policy,
    with the missing input named in the job's last_error."""
    amp.required_inputs = ["message", "customer_tier"]
    proc = await sidecar_factory(crews(whatsapp_crew=amp_crew(amp)))
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "Oi")

    await chatwoot.wait_for(lambda: chatwoot.status_of(conv.display_id) == "open")
    await chatwoot.wait_for(lambda: len(chatwoot.notes(conv.display_id)) == 1)
    assert "customer_tier" in (chatwoot.notes(conv.display_id)[0] or "")
    job = await finished_job(proc, conv.account.id, conv.display_id, "dead")
    assert job.attempts == 1 and amp.kickoff_requests == 1
    assert "HTTP 422" in job.last_error and "missing inputs customer_tier" in job.last_error
    assert chatwoot.replies(conv.display_id) == []


async def test_deadline_passed_leads_to_the_failure_policy(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, amp: FakeAmp
) -> None:
    """A run that never finishes is given up at the crew's deadline_seconds."""
    amp.never_finish = True
    proc = await sidecar_factory(crews(whatsapp_crew=amp_crew(amp, deadline_seconds=1.0)))
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "Oi")

    await chatwoot.wait_for(lambda: chatwoot.status_of(conv.display_id) == "open")
    await chatwoot.wait_for(lambda: len(chatwoot.notes(conv.display_id)) == 1)
    job = await finished_job(proc, conv.account.id, conv.display_id, "dead")
    assert "deadline" in job.last_error
    assert len(amp.runs) == 1 and amp.kickoff_requests == 1  # polled, never kicked off again
    [run] = amp.runs.values()
    assert run.polls >= 2
    assert chatwoot.replies(conv.display_id) == []


async def test_failed_run_leads_to_the_failure_policy(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, amp: FakeAmp
) -> None:
    amp.run_fails, amp.polls_before_done = True, 0
    proc = await sidecar_factory(crews(whatsapp_crew=amp_crew(amp)))
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "Oi")
    await chatwoot.wait_for(lambda: chatwoot.status_of(conv.display_id) == "open")
    job = await finished_job(proc, conv.account.id, conv.display_id, "dead")
    assert "LLM quota exceeded" in job.last_error
    assert jobs_of(proc, conv.account.id, conv.display_id)[0].attempts == 1
