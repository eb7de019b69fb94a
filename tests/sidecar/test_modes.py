"""Modes per inbox and per routing rule: the sidecar in-process, the fake Chatwoot and crews over HTTP.

draft: the crew's answer reaches the agents as a private "suggested reply" note, never the
customer. shadow: a crew runs on live traffic and its answer is only recorded (state, /stats,
metrics); nothing of it is written to Chatwoot.
"""

from __future__ import annotations

from simulators import FakeChatwoot, FakeCrew
from simulators.fake_crew import envelope_crew
from tests.conftest import SidecarFactory
from tests.harness import InProcessSidecar
from tests.waiting import wait_until

DRAFT_PREFIX = "Suggested reply (draft, not sent to the customer):"
WRITES = ("/messages", "/toggle_status", "/assignments", "/labels", "/toggle_typing_status", "/toggle_priority",
          "/custom_attributes")


def _outcomes(sidecar: InProcessSidecar, kind: str) -> list[dict]:
    return sidecar.query(lambda tx: tx.outcomes.recent(kind))


def _writes(chatwoot: FakeChatwoot, conv_id: int) -> list[str]:
    return [f"{r.method} {r.path}" for r in chatwoot.requests
            if r.method == "POST" and f"/conversations/{conv_id}/" in r.path + "/"]


async def test_a_draft_inbox_posts_the_answer_as_a_private_note_only(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    sidecar = await sidecar_factory({"inboxes": {31: {"mode": "draft"}}})
    conv = chatwoot.open_conversation("whatsapp", inbox_id=31)
    await chatwoot.customer_says(conv, "Quanto custa a barraca Trail?")
    await chatwoot.wait_for(lambda: len(chatwoot.notes(conv.display_id)) == 1)
    [note] = chatwoot.notes(conv.display_id)
    assert note.startswith(DRAFT_PREFIX) and "R$ 899,90" in note
    assert chatwoot.replies(conv.display_id) == []
    assert chatwoot.status_of(conv.display_id) == "pending"  # the bot changed nothing for the customer
    [draft] = await wait_until(lambda: _outcomes(sidecar, "draft"), what="draft outcome")
    assert draft["crew"] == "whatsapp_crew"
    assert _outcomes(sidecar, "answered") == []

    # The agent answers (the conversation is theirs now); the next customer message still gets a draft.
    await chatwoot.agent_says(conv, "Olá! Posso ajudar.")
    await chatwoot.customer_says(conv, "E a barraca de 3 pessoas, quanto custa?")
    await chatwoot.wait_for(lambda: len(chatwoot.notes(conv.display_id)) == 2)
    assert chatwoot.replies(conv.display_id) == []
    assert [m["content"] for m in chatwoot.messages_in(conv.display_id)
            if m["message_type"] == "outgoing" and not m["private"]] == ["Olá! Posso ajudar."]


async def test_a_draft_hand_off_is_a_suggestion_not_a_hand_off(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    await sidecar_factory({"routing": {"mode": "draft"}})
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "quero falar com um humano")
    await chatwoot.wait_for(lambda: len(chatwoot.notes(conv.display_id)) == 1)
    [note] = chatwoot.notes(conv.display_id)
    assert note.startswith("Suggested: hand this conversation to a human")
    assert chatwoot.status_of(conv.display_id) == "pending" and chatwoot.assignments(conv.display_id) == []
    assert chatwoot.replies(conv.display_id) == []


async def test_a_shadow_rule_writes_nothing_to_chatwoot_and_records_the_answer(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    sidecar = await sidecar_factory({"routing": {"rules": [
        {"channel": "facebook", "crew": "facebook_crew", "mode": "shadow", "name": "fb-trial"}]}})
    conv = chatwoot.open_conversation("facebook")
    await chatwoot.customer_says(conv, "Where is my order 48213?")
    [shadow] = await wait_until(lambda: _outcomes(sidecar, "shadow"), what="shadow outcome")
    assert shadow["crew"] == "facebook_crew" and shadow["rule"] == "fb-trial"
    assert "out for delivery" in shadow["detail"]
    assert len(crew.crew_requests()) == 1
    job = await wait_until(lambda: sidecar.query(lambda tx: [j for j in tx.jobs.for_conversation(7, conv.display_id)
                                                              if j.state == "done"]), what="job done")
    assert job[0].mode == "shadow" and job[0].outcome == "shadow"
    assert _writes(chatwoot, conv.display_id) == []
    assert chatwoot.messages_in(conv.display_id)[-1]["content"] == "Where is my order 48213?"


async def test_a_shadow_crew_beside_the_live_crew_answers_only_into_the_record(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    sidecar = await sidecar_factory({"routing": {"rules": [
        {"channel": "whatsapp", "crew": "whatsapp_crew", "shadow_crew": "new_crew", "name": "wa"}]}})
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "Quanto custa a barraca?")
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)
    [shadow] = await wait_until(lambda: _outcomes(sidecar, "shadow"), what="shadow outcome")
    assert shadow["crew"] == "new_crew" and shadow["rule"] == "wa"
    assert sorted(envelope_crew(e) for e in crew.crew_requests()) == ["new_crew", "whatsapp_crew"]
    # One answer reached the customer, and only the live crew's.
    assert len(chatwoot.replies(conv.display_id)) == 1
    # Recorded when the reply's completion commits, just after Chatwoot answered the create.
    [answered] = await wait_until(lambda: _outcomes(sidecar, "answered"), what="answered outcome")
    assert answered["crew"] == "whatsapp_crew"
    assert len(chatwoot.calls("messages")) == 1


async def test_a_failing_shadow_crew_never_reaches_the_customer(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    sidecar = await sidecar_factory({"routing": {"rules": [
        {"channel": "facebook", "crew": "facebook_crew", "mode": "shadow"}]}})
    crew.fail_always(503)
    conv = chatwoot.open_conversation("facebook")
    await chatwoot.customer_says(conv, "Hello?")
    await wait_until(lambda: sidecar.query(lambda tx: tx.dead_letters()), what="dead letter")
    assert _writes(chatwoot, conv.display_id) == []
    row = sidecar.query(lambda tx: tx.conversations.get(7, conv.display_id))
    assert row.owner == "bot"  # a shadow crew's failure hands nothing over
