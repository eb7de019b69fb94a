"""R2/R3: a crash or a dropped connection never loses an answer nor posts it twice.

The kill -9 tests run the sidecar as a real process, killed with SIGKILL and started again on
the same database; the others run it in-process, against a fake Chatwoot that stores a reply
and then cuts the connection before answering.
"""

from __future__ import annotations

import json
import time

import pytest

from simulators import FakeChatwoot, FakeCrew
from tests.conftest import ProcessFactory, SidecarFactory
from tests.harness import free_port
from tests.reliability.helpers import crew_keys, jobs, open_jobs, rows
from tests.waiting import wait_until

LEASE = {"processing": {"lease_seconds": 1.5}}
USER_TOKEN = {"token_kind": "user"}


async def test_kill_9_while_the_crew_answers_resends_same_key_and_replies_once(
    process_factory: ProcessFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    proc = await process_factory(LEASE)
    crew.latency = 1.0
    conv = chatwoot.open_conversation("whatsapp")
    status, body = await chatwoot.customer_says(conv, "Qual o horário de atendimento?")
    assert (status, body["status"]) == (200, "accepted")

    await crew.wait_for(lambda: len(crew.crew_requests()) == 1)
    assert await proc.kill() == -9
    # The crew finishes its work and answers into the dead connection: it has done the request.
    await crew.wait_for(lambda: len(crew.unique_requests()) == 1)
    [job] = jobs(proc)
    assert job["state"] == "in_flight" and job["attempts"] == 1
    assert rows(proc, "SELECT * FROM crew_attempts") == []  # the sidecar never recorded the answer
    lease_expired_at = job["lease_expires_at"]

    await proc.start()
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1, timeout=20)
    await wait_until(lambda: open_jobs(proc) == 0, what="queue drained")

    first, second = [r for r in crew.requests if r.kind == "crew"]
    assert crew_keys([first, second]) == [job["request_id"]] * 2  # same Idempotency-Key
    assert first.body == second.body  # byte-for-byte the same request
    assert second.at >= lease_expired_at - 0.05  # re-sent only after the lease expired
    assert crew.unique_requests() == [job["request_id"]] and crew.duplicates == 1
    assert len(chatwoot.replies(conv.display_id)) == 1
    assert len(chatwoot.calls("messages")) == 1
    [done] = jobs(proc)
    assert done["state"] == "done" and done["attempts"] == 2


@pytest.mark.parametrize("chatwoot", [USER_TOKEN], indirect=True)
async def test_kill_9_during_the_reply_post_never_posts_twice(
    process_factory: ProcessFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    """The create call is in flight when the sidecar dies; Chatwoot stores the message anyway.
    After the restart the message list is the evidence, so it is not posted again."""
    proc = await process_factory(LEASE)
    chatwoot.delay_next("messages", 2.0)
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "Meu pedido chegou?")
    await chatwoot.wait_for(lambda: len(chatwoot.calls("messages")) == 1)
    assert await proc.kill() == -9
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1, timeout=10)

    await proc.start()
    await wait_until(lambda: open_jobs(proc) == 0, what="queue drained")
    assert len(chatwoot.replies(conv.display_id)) == 1
    assert len(chatwoot.calls("messages")) == 1  # looked (GET), never re-posted
    assert len(crew.unique_requests()) == 1 and crew.duplicates == 0
    [job] = jobs(proc)
    assert job["state"] == "done"
    [action] = rows(proc, "SELECT * FROM actions_applied WHERE job_id=?", (job["id"],))
    stored = [m for m in chatwoot.messages_in(conv.display_id) if m.get("content") == chatwoot.replies(conv.display_id)[0]]
    assert action["state"] == "done" and action["chatwoot_message_id"] == stored[0]["id"]


@pytest.mark.parametrize(
    ("chatwoot", "evidence"),
    [({}, "echo"), ({"token_kind": "user"}, "message list")],
    indirect=["chatwoot"],
)
async def test_reply_stored_then_connection_dropped_gives_exactly_one_message(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew, evidence: str
) -> None:
    proc = await sidecar_factory()
    chatwoot.drop_after_store_next(1)
    conv = chatwoot.open_conversation("webwidget")
    await chatwoot.customer_says(conv, "Quanto custa a barraca?")
    if evidence == "message list":
        # The echo webhook is lost (Chatwoot could not reach us): only the list can tell.
        chatwoot.webhook_url = f"http://127.0.0.1:{free_port()}/webhook/chatwoot"
    await wait_until(lambda: [j["state"] for j in jobs(proc)] == ["done"], what="job done")

    assert len(chatwoot.replies(conv.display_id)) == 1
    assert len(chatwoot.calls("messages")) == 1  # the create was never repeated
    if evidence == "message list":
        assert chatwoot.calls("messages", method="GET"), "the message list should have been consulted"
    [job] = jobs(proc)
    [reply] = [m for m in chatwoot.messages_in(conv.display_id) if m.get("content") == chatwoot.replies(conv.display_id)[0]]
    recorded = rows(proc, "SELECT * FROM actions_applied WHERE job_id=? AND kind='message'", (job["id"],))
    assert [a["chatwoot_message_id"] for a in recorded] == [reply["id"]]
    assert job["apply_attempts"] == 1  # the dropped create was counted once
    assert len(crew.unique_requests()) == 1 and crew.duplicates == 0
    # The bot still owns the conversation: its own (echoed) message is not a human's.
    [conv_row] = rows(proc, "SELECT owner FROM conversations WHERE conversation_id=?", (conv.display_id,))
    assert conv_row["owner"] == "bot"


async def test_echo_grace_is_the_configured_wait_before_a_lost_reply_is_posted_again(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    """Agent-bot token, create call dropped after Chatwoot stored it, echo lost: no evidence can
    come, so after processing.echo_grace_seconds the reply is posted again (the documented
    duplicate of docs/reliability.md), not after a fixed 10 s."""
    proc = await sidecar_factory({"processing": {"echo_grace_seconds": 0.6}})
    chatwoot.drop_after_store_next(1)
    conv = chatwoot.open_conversation("webwidget")
    # The grace runs from the reply's intent row, committed before its create call reaches
    # Chatwoot (so not from first.at) and certainly after the customer wrote.
    wrote = time.time()
    await chatwoot.customer_says(conv, "Quanto custa a barraca?")
    chatwoot.webhook_url = f"http://127.0.0.1:{free_port()}/webhook/chatwoot"  # the echo is lost
    await wait_until(lambda: [j["state"] for j in jobs(proc)] == ["done"], what="job done")
    first, second = chatwoot.calls("messages")
    assert second.at - wrote >= 0.6  # posted again only once the grace has run out
    assert second.at - first.at < 8.0  # the configured grace, not the default 10 s
    assert len(chatwoot.replies(conv.display_id)) == 2


@pytest.mark.parametrize("chatwoot", [{"token_kind": "user", "echo_before_response": True}], indirect=True)
async def test_own_echo_before_the_create_answer_does_not_pause_the_bot(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    """With a user token the echo carries a user sender, and it arrives before the create call
    has answered (so the sidecar has not learned its user id yet): it must still be ours."""
    proc = await sidecar_factory()
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "Olá")
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)
    await wait_until(lambda: open_jobs(proc) == 0, what="first job finished")
    status, body = await chatwoot.customer_says(conv, "Qual o horário?")
    assert (status, body["status"]) == (200, "accepted"), body
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 2)
    [conv_row] = rows(proc, "SELECT owner FROM conversations WHERE conversation_id=?", (conv.display_id,))
    assert conv_row["owner"] == "bot"
    roles = [r["role"] for r in rows(proc, "SELECT role FROM messages WHERE conversation_id=? ORDER BY id",
                                     (conv.display_id,))]
    assert "agent" not in roles, roles
    assert chatwoot.handoffs == []
    assert json.dumps(chatwoot.defects) == "[]"
