"""Safety budgets: each limit, once exceeded, hands the conversation to a human with reason
``budget`` (and the crew is not asked)."""

from __future__ import annotations

from typing import Any

from simulators import FakeChatwoot, FakeCrew
from simulators.payloads import FakeConversation
from tests.conftest import SidecarFactory

OFF = {"max_replies_per_conversation_per_hour": 0, "max_messages_per_contact_per_minute": 0,
       "max_bot_turns": 0, "loop_guard": False}


def _budgets(**on: Any) -> dict[str, Any]:
    return {"budgets": {**OFF, **on}}


async def _exchange(chatwoot: FakeChatwoot, conv: FakeConversation, text: str) -> str:
    before = len(chatwoot.replies(conv.display_id))
    await chatwoot.customer_says(conv, text)
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == before + 1)
    return chatwoot.replies(conv.display_id)[-1] or ""


async def _budget_note(chatwoot: FakeChatwoot, conv: FakeConversation) -> str:
    await chatwoot.wait_for(lambda: "handoff-budget" in chatwoot.labels_of(conv.display_id))
    assert chatwoot.status_of(conv.display_id) == "open"
    [note] = chatwoot.notes(conv.display_id)
    assert note is not None and note.startswith("Handed to a human (budget): ")
    return note


async def test_max_bot_turns(sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew) -> None:
    await sidecar_factory(_budgets(max_bot_turns=2))
    conv = chatwoot.open_conversation("whatsapp")
    await _exchange(chatwoot, conv, "Quanto custa a barraca?")
    await _exchange(chatwoot, conv, "E o saco de dormir?")
    await chatwoot.customer_says(conv, "E a lanterna?")
    note = await _budget_note(chatwoot, conv)
    assert "the bot answered 2 times in this conversation (budgets.max_bot_turns: 2)" in note
    assert len(crew.crew_requests()) == 2


async def test_max_replies_per_conversation_per_hour(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    await sidecar_factory(_budgets(max_replies_per_conversation_per_hour=1))
    conv = chatwoot.open_conversation("whatsapp")
    await _exchange(chatwoot, conv, "Quanto custa a barraca?")
    await chatwoot.customer_says(conv, "E o saco de dormir?")
    note = await _budget_note(chatwoot, conv)
    assert "(budgets.max_replies_per_conversation_per_hour: 1)" in note
    # Another conversation has its own budget.
    other = chatwoot.open_conversation("whatsapp")
    await _exchange(chatwoot, other, "Quanto custa a barraca?")


async def test_max_messages_per_contact_per_minute(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    await sidecar_factory({**_budgets(max_messages_per_contact_per_minute=3),
                           "processing": {"debounce_seconds": 0.5}})
    conv = chatwoot.open_conversation("whatsapp")
    for n in range(4):  # one burst of four messages in well under a minute
        await chatwoot.customer_says(conv, f"oi {n}")
    note = await _budget_note(chatwoot, conv)
    assert "the contact sent 4 messages in the last minute (budgets.max_messages_per_contact_per_minute: 3)" in note
    assert crew.crew_requests() == []


async def test_loop_guard_when_our_reply_comes_back(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    await sidecar_factory(_budgets(loop_guard=True))
    conv = chatwoot.open_conversation("whatsapp")
    reply = await _exchange(chatwoot, conv, "Quanto custa a barraca?")
    await chatwoot.customer_says(conv, reply)  # another bot echoing ours
    note = await _budget_note(chatwoot, conv)
    assert "loop guard: the customer's message repeats one of the bot's replies" in note
    assert len(crew.crew_requests()) == 1


async def test_loop_guard_when_the_same_text_keeps_coming(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    await sidecar_factory(_budgets(loop_guard=True))
    conv = chatwoot.open_conversation("whatsapp")
    for _ in range(2):
        await _exchange(chatwoot, conv, "MENU")
    await chatwoot.customer_says(conv, "MENU")
    note = await _budget_note(chatwoot, conv)
    assert "loop guard: the same customer message 3 times in a row" in note
