"""End to end through the real sidecar: crews reached as tools of a FastMCP server."""

from __future__ import annotations

from simulators import FakeChatwoot, FakeCrew
from simulators.fake_mcp import FakeMcp
from tests.conftest import SidecarFactory
from tests.sidecar.crew.conftest import crews, finished_job, jobs_of


def mcp_crew(server: FakeMcp, **extra: object) -> dict[str, object]:
    return {"backend": "mcp", "url": server.url, "token": server.token, "timeout_seconds": 3, **extra}


async def test_mcp_crew_answers_a_message_end_to_end(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew, mcp_server: FakeMcp
) -> None:
    """The routed crew's tool gets the envelope; its structured answer reaches Chatwoot."""
    proc = await sidecar_factory(crews(whatsapp_crew=mcp_crew(mcp_server)))
    conv = chatwoot.open_conversation("whatsapp")
    status, body = await chatwoot.customer_says(conv, "Quanto custa a barraca?")
    assert status == 200 and body["status"] == "accepted"

    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)
    assert "R$ 899,90" in (chatwoot.replies(conv.display_id)[0] or "")
    await chatwoot.wait_for(lambda: "lead" in chatwoot.labels_of(conv.display_id))
    [call] = mcp_server.calls_to("handle_message")
    assert call.authorization == f"Bearer {mcp_server.token}"
    assert call.arguments["crew"] == "whatsapp_crew"
    assert call.arguments["messages"][0]["content"] == "Quanto custa a barraca?"
    [job] = jobs_of(proc, conv.account.id, conv.display_id)
    assert job.backend == "mcp" and job.request_id == call.arguments["request_id"]
    assert not [r for r in crew.requests if r.kind == "crew"], "the default HTTP back-end was not used"


async def test_custom_header_auth_and_plain_text_answer(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, mcp_server: FakeMcp
) -> None:
    """Auth given as a custom header works too; plain text content becomes one reply."""
    mcp_server.mode = "plain_text"
    entry = mcp_crew(mcp_server, headers={"Authorization": f"Bearer {mcp_server.token}"})
    entry["token"] = ""
    await sidecar_factory(crews(whatsapp_crew=entry))
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "Que horas vocês abrem?")
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)
    assert "8h" in (chatwoot.replies(conv.display_id)[0] or "")
    assert mcp_server.unauthorized == 0


async def test_session_expiry_mid_run_is_survived(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, mcp_server: FakeMcp
) -> None:
    """The server expires the sidecar's session between two messages (HTTP 404 on it): the
    sidecar opens a new session and retries the call within the same attempt."""
    proc = await sidecar_factory(crews(whatsapp_crew=mcp_crew(mcp_server)))
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "Quanto custa a barraca?")
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)
    assert mcp_server.sessions_started == 1

    mcp_server.expire_sessions()
    other = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(other, "Onde está meu pedido?")
    await chatwoot.wait_for(lambda: len(chatwoot.replies(other.display_id)) == 1)

    await proc.wait_for_output("mcp.session_expired")
    assert mcp_server.expired_answers >= 1
    assert mcp_server.sessions_started == 2
    job = await finished_job(proc, other.account.id, other.display_id)
    assert job.state == "done" and job.attempts == 1  # reconnected inside the attempt, no queue retry


async def test_mcp_server_restart_is_survived(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, mcp_server: FakeMcp
) -> None:
    """A restarted crew server has forgotten every session; the next message is still answered."""
    await sidecar_factory(crews(whatsapp_crew=mcp_crew(mcp_server)))
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "Quanto custa a barraca?")
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)

    await mcp_server.restart()
    await chatwoot.customer_says(conv, "E a entrega, quando chega?")
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 2)
    assert mcp_server.sessions_started >= 2


async def test_tool_error_leads_to_the_failure_policy(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, mcp_server: FakeMcp
) -> None:
    """``isError: true`` is final: one call, then dead letter + private note + hand-off."""
    mcp_server.mode = "error"
    proc = await sidecar_factory(crews(whatsapp_crew=mcp_crew(mcp_server)))
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "Oi, tudo bem?")

    await chatwoot.wait_for(lambda: chatwoot.status_of(conv.display_id) == "open")
    await chatwoot.wait_for(lambda: len(chatwoot.notes(conv.display_id)) == 1)
    assert "crew exploded" in (chatwoot.notes(conv.display_id)[0] or "")
    assert chatwoot.replies(conv.display_id) == []
    job = await finished_job(proc, conv.account.id, conv.display_id, "dead")
    assert job.state == "dead" and job.attempts == 1
    assert "MCP tool handle_message failed" in job.last_error and "crew exploded" in job.last_error
    assert len(mcp_server.calls_to("handle_message")) == 1


async def test_kickoff_crew_then_get_crew_status(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, mcp_server: FakeMcp
) -> None:
    """CrewAI's enterprise-mcp-server shape: kickoff_crew, then get_crew_status until SUCCESS."""
    mcp_server.kickoff_polls = 2
    proc = await sidecar_factory(crews(whatsapp_crew=mcp_crew(
        mcp_server, tool="kickoff_crew", poll_interval_seconds=0.1, deadline_seconds=20)))
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "Quanto custa a barraca?")

    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)
    assert "R$ 899,90" in (chatwoot.replies(conv.display_id)[0] or "")
    [kickoff] = mcp_server.calls_to("kickoff_crew")
    inputs = kickoff.arguments["inputs"]
    assert inputs["message"] == "Quanto custa a barraca?" and inputs["channel"] == "whatsapp"
    assert all(isinstance(value, str) for value in inputs.values())
    statuses = mcp_server.calls_to("get_crew_status")
    assert len(statuses) == 3  # STARTED, STARTED, SUCCESS
    [job] = jobs_of(proc, conv.account.id, conv.display_id)
    assert job.external_id == statuses[0].arguments["crew_id"]
