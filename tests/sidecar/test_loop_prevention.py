"""Which messages the bot answers (CONTRACT §4): only customers, only while it owns the conversation."""

from __future__ import annotations

from simulators import FakeChatwoot, FakeCrew
from simulators.payloads import conversation_event
from tests.conftest import SidecarFactory
from tests.harness import InProcessSidecar


async def _answered_once_more(chatwoot: FakeChatwoot, conv, text: str) -> None:  # noqa: ANN001
    """A positive sync point: a real customer message after the events under test."""
    before = len(chatwoot.replies(conv.display_id))
    status, body = await chatwoot.customer_says(conv, text)
    assert status == 200 and body["status"] == "accepted", body
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == before + 1)


async def test_own_replies_notes_templates_echoes_and_updates_are_never_answered(
    sidecar: InProcessSidecar, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    """The bot's echoed reply, a note, a template, message_updated and conversation events ask no crew."""
    conv = chatwoot.open_conversation("whatsapp")
    await _answered_once_more(chatwoot, conv, "Oi, meu pedido atrasou")
    # The reply's echo (agent-bot token) came back as a webhook and must not have paused the bot.
    await chatwoot.wait_for(lambda: any(r[1] == "message_created" and r[3] and "outgoing" in r[3]["reason"]
                                        for r in chatwoot.webhook_results))
    echo = next(r[0] for r in chatwoot.webhook_results if r[3] and "outgoing" in r[3]["reason"])
    outcome, reason = await sidecar.outcome(echo)
    assert outcome == "ignored" and "bot message" in reason
    bot_message = conv.messages[-1]
    results = [
        await chatwoot.agent_says(conv, "nota interna: cliente VIP", private=True),
        await chatwoot.template_message(conv, "Bem-vindo! Responderemos em breve."),
        await chatwoot.update_message(conv, bot_message.id),
        await chatwoot.announce(conv),
        await chatwoot.send_event({"event": "contact_updated", "id": 1, "name": "x"}),
        await chatwoot.send_event({"event": "webwidget_triggered", "id": 5, "event_info": {}}),
        await chatwoot.send_event({"event": "inbox_created", "id": 9}),
        await chatwoot.send_event({"event": "conversation_typing_on", "conversation": {}}),
        await chatwoot.send_event(conversation_event(conv, "conversation_updated")),
    ]
    assert all(status == 200 and body["status"] == "ignored" for status, body in results), results
    await _answered_once_more(chatwoot, conv, "Alguma novidade?")
    assert len(crew.crew_requests()) == 2
    owner = sidecar.query(lambda s: s.conversations.get(7, conv.display_id).owner)
    assert owner == "bot"


async def test_user_token_echo_arriving_before_the_create_answer_does_not_pause(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    """With a user token, our own reply echoes as sender.type=user, even before Chatwoot answers us."""
    chatwoot.token_kind = "user"
    chatwoot.echo_before_response = True
    proc = await sidecar_factory()
    conv = chatwoot.open_conversation("facebook", status="open")
    await _answered_once_more(chatwoot, conv, "Do you ship to Canada?")
    await _answered_once_more(chatwoot, conv, "And to Mexico?")
    assert len(crew.crew_requests()) == 2
    row = proc.query(lambda s: s.conversations.get(7, conv.display_id))
    assert row.owner == "bot", row.owner_reason


async def test_a_native_app_echo_pauses_the_bot(sidecar: InProcessSidecar, chatwoot: FakeChatwoot, crew: FakeCrew) -> None:
    """A message typed in the WhatsApp Business app itself is a human agent's message."""
    conv = chatwoot.open_conversation("whatsapp")
    status, body = await chatwoot.native_echo(conv, "Oi Mariana, aqui é o Carlos pelo app")
    assert status == 200 and body["status"] == "ignored"
    await chatwoot.customer_says(conv, "Oi Carlos!")
    outcome, reason = await sidecar.outcome(chatwoot.webhook_results[-1][0])
    assert outcome == "ignored" and "does not own" in reason
    assert crew.crew_requests() == []


async def test_human_reply_pauses_and_resolution_gives_the_conversation_back(
    sidecar: InProcessSidecar, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    """A human agent's public reply pauses the bot; resolved + a new customer message wakes it."""
    conv = chatwoot.open_conversation("webwidget")
    await _answered_once_more(chatwoot, conv, "Hi, I need help with order 48190")
    status, body = await chatwoot.agent_says(conv, "Hi Priya, Carlos here, I'll take it from here.")
    assert status == 200
    await chatwoot.customer_says(conv, "Thanks Carlos")
    outcome, reason = await sidecar.outcome(chatwoot.webhook_results[-1][0])
    assert outcome == "ignored" and "human" in reason
    await chatwoot.resolve(conv)
    await _answered_once_more(chatwoot, conv, "Hello again, another question")
    assert len(crew.crew_requests()) == 2
    row = sidecar.query(lambda s: s.conversations.get(7, conv.display_id))
    assert row.owner == "bot" and "resolved" in row.owner_reason


async def test_unserved_inbox_is_ignored(sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew) -> None:
    """chatwoot.inbox_ids limits the inboxes the bot serves."""
    await sidecar_factory({"chatwoot": {"inbox_ids": [21]}})
    served = chatwoot.open_conversation("whatsapp")
    other = chatwoot.open_conversation("facebook")
    status, body = await chatwoot.customer_says(other, "hello?")
    assert body["status"] == "ignored" and "not served" in body["reason"]
    await _answered_once_more(chatwoot, served, "oi")
    assert len(crew.crew_requests()) == 1
