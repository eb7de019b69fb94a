"""Every hand-off carries its package: a reason category, a private note with the reason and a
summary of the conversation, a team, labels; and a reminder when no human answers in time."""

from __future__ import annotations

from simulators import FakeChatwoot, FakeCrew
from tests.conftest import SidecarFactory
from tests.harness import InProcessSidecar
from tests.waiting import wait_until


def _handoffs(sidecar: InProcessSidecar, conv_id: int) -> list:
    return sidecar.query(lambda tx: tx.handoffs.for_conversation(7, conv_id))


async def _handed_off(chatwoot: FakeChatwoot, conv_id: int) -> str:
    """Waits for the whole package (the category label is its last step); returns its note."""
    await chatwoot.wait_for(lambda: any(label.startswith("handoff-") for label in chatwoot.labels_of(conv_id)))
    assert chatwoot.status_of(conv_id) == "open"
    return chatwoot.notes(conv_id)[0] or ""


def _teams(chatwoot: FakeChatwoot, conv_id: int) -> list[int | None]:
    return [a.get("team_id") for a in chatwoot.assignments(conv_id)]


async def test_customer_keywords_hand_over_at_once_with_note_team_and_labels(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    sidecar = await sidecar_factory({"handoff": {"customer_keywords": ["atendente"], "team_id": 4,
                                                 "customer_message": "Já chamo alguém."}})
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "Meu pedido 48213 veio errado")
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)
    await chatwoot.customer_says(conv, "Quero falar com um ATENDENTE, por favor")
    note = await _handed_off(chatwoot, conv.display_id)
    assert chatwoot.replies(conv.display_id)[-1] == "Já chamo alguém."
    assert note.startswith("Handed to a human (customer request): customer asked for a human ('atendente')")
    assert "Conversation so far:" in note
    assert "Customer: Meu pedido 48213 veio errado" in note and "Customer: Quero falar com um ATENDENTE" in note
    assert "Bot: " in note
    assert _teams(chatwoot, conv.display_id) == [4]
    assert {"handoff", "handoff-customer-request"} <= set(chatwoot.labels_of(conv.display_id))
    assert len(crew.crew_requests()) == 1  # the second message never reached a crew
    [handoff] = await wait_until(lambda: _handoffs(sidecar, conv.display_id), what="hand-off recorded")
    assert (handoff.category, handoff.team_id) == ("customer_request", 4)


async def test_a_crew_hand_off_takes_the_rule_team_and_names_crew_and_rule(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    await sidecar_factory({"handoff": {"team_id": 4}, "routing": {"rules": [
        {"channel": "whatsapp", "crew": "whatsapp_crew", "name": "wa", "handoff_team_id": 6}]}})
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "quero falar com um humano")
    note = await _handed_off(chatwoot, conv.display_id)
    assert note.startswith("Handed to a human (customer request): customer asked for a human")
    assert "crew whatsapp_crew · rule wa · team 6" in note
    assert _teams(chatwoot, conv.display_id) == [6]
    assert chatwoot.replies(conv.display_id) == ["Vou transferir você para um atendente. Um momento, por favor."]
    assert "handoff-customer-request" in chatwoot.labels_of(conv.display_id)


async def test_a_crew_failure_hands_off_with_the_failure_as_reason(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    sidecar = await sidecar_factory({"handoff": {"labels": ["bot-handoff"]}})
    crew.fail_always(503)
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "Alguém aí?")
    note = await _handed_off(chatwoot, conv.display_id)
    assert note.startswith("Handed to a human (crew failure): the assistant could not answer:")
    assert "HTTP 503" in note and "Customer: Alguém aí?" in note
    assert set(chatwoot.labels_of(conv.display_id)) >= {"bot-handoff", "handoff-crew-failure"}
    [handoff] = await wait_until(lambda: _handoffs(sidecar, conv.display_id), what="hand-off recorded")
    assert handoff.category == "crew_failure"


async def test_a_decision_below_min_confidence_goes_to_a_human(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    await sidecar_factory({"mcp_crew": {"decision_engine_url": crew.decide_url},
                           "routing": {"min_confidence": 0.7}})
    sure = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(sure, "Quanto custa a barraca?")  # the engine is 0.9 sure: answered
    await chatwoot.wait_for(lambda: len(chatwoot.replies(sure.display_id)) == 1)
    unsure = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(unsure, "bom dia")  # 0.5: below the floor
    note = await _handed_off(chatwoot, unsure.display_id)
    assert note.startswith("Handed to a human (low confidence):") and "0.5" in note
    assert "handoff-low-confidence" in chatwoot.labels_of(unsure.display_id)
    assert len(crew.crew_requests()) == 1  # no crew was asked for the unsure one


async def test_denied_and_unlisted_contacts_go_to_humans_with_reason_policy(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    vip = chatwoot.open_conversation("whatsapp", labels=["vip"])
    blocked = chatwoot.open_conversation("whatsapp")
    stranger = chatwoot.open_conversation("facebook")
    await sidecar_factory({"contacts": {"allow": ["label:vip", f"phone:{blocked.contact.phone_number}"],
                                        "deny": [f"id:{blocked.contact.id}"]}})
    await chatwoot.customer_says(vip, "Quanto custa a barraca?")
    await chatwoot.wait_for(lambda: len(chatwoot.replies(vip.display_id)) == 1)
    await chatwoot.customer_says(blocked, "Oi")
    note = await _handed_off(chatwoot, blocked.display_id)
    assert note.startswith(f"Handed to a human (policy): contact is on contacts.deny (id:{blocked.contact.id})")
    await chatwoot.customer_says(stranger, "Hi")
    note = await _handed_off(chatwoot, stranger.display_id)
    assert note.startswith("Handed to a human (policy): contact is not on contacts.allow")
    assert chatwoot.replies(blocked.display_id) == chatwoot.replies(stranger.display_id) == []
    assert len(crew.crew_requests()) == 1


async def test_a_reminder_and_an_escalation_when_no_human_replies(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    sidecar = await sidecar_factory({"handoff": {"customer_keywords": ["humano"], "team_id": 4,
                                                 "remind_after_minutes": 0.04, "escalation_team_id": 9}})
    waiting = chatwoot.open_conversation("whatsapp")
    answered = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(waiting, "quero um humano")
    await chatwoot.customer_says(answered, "quero um humano")
    await _handed_off(chatwoot, waiting.display_id)
    await _handed_off(chatwoot, answered.display_id)
    await chatwoot.agent_says(answered, "Oi, sou a Ana, vou te ajudar.")
    await wait_until(lambda: all(h.human_replied_at for h in _handoffs(sidecar, answered.display_id)),
                     what="the agent's reply recorded")
    await chatwoot.wait_for(lambda: len(chatwoot.notes(waiting.display_id)) == 2, timeout=20)
    reminder = chatwoot.notes(waiting.display_id)[1] or ""
    assert reminder.startswith("Reminder: this conversation was handed to a human")
    assert "(customer_request: customer asked for a human ('humano'))" in reminder
    assert reminder.endswith("Escalated to team 9.")
    await chatwoot.wait_for(lambda: _teams(chatwoot, waiting.display_id) == [4, 9])
    [handoff] = _handoffs(sidecar, waiting.display_id)
    assert handoff.reminded_at is not None and handoff.escalated_at is not None
    # The conversation a human answered got no reminder, also after the other one's was posted.
    await wait_until(lambda: sidecar.query(lambda tx: tx.handoffs.waiting()) == 0, what="nothing waiting")
    assert len(chatwoot.notes(answered.display_id)) == 1 and _teams(chatwoot, answered.display_id) == [4]
