"""The simulators' Chatwoot payloads: signatures and the shape of every event, per channel,
against the reference samples."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from simulators.payloads import (
    CHANNELS,
    contact_event,
    conversation_event,
    inbox_created,
    message_event,
    sample_conversation,
    typing_event,
    webwidget_triggered,
)
from simulators.signing import chatwoot_json, sign, verify
from tests.simulators.helpers import REF, load, shape

SECRET = "Xk9vR2mQ7tLp4WcZ8bNs3hJd"
MESSAGE_KEYS = ["account", "additional_attributes", "content_attributes", "content_type", "content", "conversation",
                "created_at", "id", "inbox", "message_type", "private", "sender", "source_id", "event"]
CONVERSATION_KEYS = ["additional_attributes", "can_reply", "channel", "contact_inbox", "id", "inbox_id", "messages",
                     "labels", "meta", "status", "custom_attributes", "snoozed_until", "unread_count",
                     "first_reply_created_at", "priority", "waiting_since", "agent_last_seen_at",
                     "contact_last_seen_at", "last_activity_at", "timestamp", "created_at", "updated_at", "account"]
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


# ------------------------------------------------------------------------------------- signing


@pytest.mark.parametrize(("name", "expected"), [
    ("signature_example_body_short.json", "sha256=6aae73c1e39ccefe6a0560cdd9cba230d5d2535f569fb8d09cbe4d03cab361b2"),
    ("signature_example_body_full.json", "sha256=46e3e8e1eedf82f0b903d14f1b89baf5799d10923b2426862e1f19472ee62f91"),
])
def test_signature_worked_examples(name: str, expected: str) -> None:
    body = (REF / name).read_bytes()
    assert sign(body, SECRET, 1784034313) == expected
    assert verify(body, SECRET, "1784034313", expected)
    assert chatwoot_json(json.loads(body)) == body  # serialising the parsed body gives the same bytes


def test_chatwoot_json_matches_rails_serialisation() -> None:
    pretty = load("message_created_incoming_whatsapp.json")
    assert chatwoot_json(pretty) == (REF / "signature_example_body_full.json").read_bytes()
    assert chatwoot_json({"a": "<b> & ção 😟"}) == '{"a":"\\u003cb\\u003e \\u0026 ção 😟"}'.encode()


# ------------------------------------------------------------------------------------- payloads

CHANNEL_CASES = [
    ("whatsapp", False, "Channel::Whatsapp", r"^wamid\.", {}),
    ("facebook", False, "Channel::FacebookPage", r"^m_", {"in_reply_to_external_id": None}),
    ("instagram", False, "Channel::Instagram", r"^aWdf", {"in_reply_to_external_id": None}),
    ("instagram", True, "Channel::FacebookPage", r"^aWdf", {"in_reply_to_external_id": None}),
    ("webwidget", False, "Channel::WebWidget", None, {"in_reply_to": None}),
    ("api", False, "Channel::Api", None, {}),
    ("email", False, "Channel::Email", r"@", {}),
    ("telegram", False, "Channel::Telegram", r"^\d+$", {}),
    ("sms", False, "Channel::Sms", r"^SM", {}),
]


@pytest.mark.parametrize(("channel", "via_page", "channel_type", "source_re", "content_attrs"), CHANNEL_CASES)
def test_incoming_message_shape_per_channel(
    channel: str, via_page: bool, channel_type: str, source_re: str | None, content_attrs: dict[str, Any],
) -> None:
    world, conv = sample_conversation(channel, instagram_via_page=via_page)
    body = message_event(conv, world.customer_message(conv, "Oi <tudo> bem & ok?"))
    assert list(body) == MESSAGE_KEYS
    assert list(body["conversation"]) == CONVERSATION_KEYS
    assert body["conversation"]["channel"] == channel_type
    assert body["message_type"] == "incoming" and body["private"] is False
    assert body["content_attributes"] == content_attrs
    assert ISO_MS.match(body["created_at"])
    assert "type" not in body["sender"] and body["sender"]["account"] == {"id": 7, "name": "Acme Outdoor"}
    if source_re is None:
        assert body["source_id"] is None
    else:
        assert re.search(source_re, body["source_id"])
    pushed = body["conversation"]["messages"]
    assert len(pushed) == 1 and pushed[0]["message_type"] == 0 and isinstance(pushed[0]["created_at"], int)
    assert pushed[0]["sender"]["type"] == "contact" and pushed[0]["sender_type"] == "Contact"
    assert body["conversation"]["meta"]["sender"]["type"] == "contact"
    assert body["inbox"] == {"id": conv.inbox.id, "name": conv.inbox.name}
    expected_attrs = {"type": "instagram_direct_message"} if via_page else {}
    if channel not in ("webwidget", "email"):
        assert body["conversation"]["additional_attributes"] == expected_attrs


def test_channel_inboxes_and_widget_attributes() -> None:
    assert [CHANNELS[c].inbox_id for c in ("whatsapp", "facebook", "instagram", "webwidget")] == [21, 22, 23, 24]
    world, conv = sample_conversation("webwidget")
    attrs = message_event(conv, world.customer_message(conv, "hi"))["conversation"]["additional_attributes"]
    assert set(attrs) == {"browser_language", "browser", "initiated_at", "referer"}
    assert conv.contact.hmac_verified and conv.contact.identifier


def test_shapes_match_reference_samples() -> None:
    world, conv = sample_conversation("whatsapp")
    incoming = message_event(conv, world.customer_message(conv, "Oi! Meu pedido ainda não chegou"))
    assert shape(incoming) == shape(load("message_created_incoming_whatsapp.json"))

    world, conv = sample_conversation("facebook", status="open")
    conv.labels = ["shipping"]
    assert shape(message_event(conv, world.customer_message(conv, "Hi"))) == \
        shape(load("message_created_incoming_facebook.json"))

    world, conv = sample_conversation("whatsapp")
    world.customer_message(conv, "Oi")
    bot_reply = message_event(conv, world.outgoing_message(conv, "Olá!", sender=world.bot))
    assert shape(bot_reply) == shape(load("message_created_outgoing_bot_reply.json"))
    assert bot_reply["sender"] == {"id": 3, "name": "Acme Assistant", "type": "agent_bot"}

    world, conv = sample_conversation("whatsapp", status="open")
    conv.assignee, conv.labels = world.agent(12), ["delivery-issue"]
    world.customer_message(conv, "Mas o rastreio diz entregue")
    note = message_event(conv, world.outgoing_message(conv, "claim opened", sender=world.agent(12), private=True))
    assert shape(note) == shape(load("message_created_private_note.json"))
    # conversation.messages holds the last public message, not the note
    assert note["conversation"]["messages"][0]["content"] == "Mas o rastreio diz entregue"
    assert note["sender"] == {"id": 12, "name": "Carlos Mendes", "email": "carlos.mendes@acme-outdoor.example",
                              "type": "user"}


def test_sender_null_for_templates_and_native_echoes() -> None:
    world, conv = sample_conversation("whatsapp")
    echo = message_event(conv, world.native_echo(conv, "typed in the phone app"))
    assert echo["sender"] is None and echo["message_type"] == "outgoing"
    assert echo["content_attributes"] == {"external_echo": True} and echo["source_id"].startswith("wamid.")
    template = message_event(conv, world.template_message(conv, "Welcome!"))
    assert template["sender"] is None and template["message_type"] == "template"
    assert template["conversation"]["messages"][0]["message_type"] == 3


def test_attachments_only_when_present() -> None:
    world, conv = sample_conversation("whatsapp")
    plain = message_event(conv, world.customer_message(conv, "no media"))
    assert "attachments" not in plain
    body = message_event(conv, world.customer_message(conv, None, attachments=["image", "audio"]))
    assert list(body)[-2:] == ["attachments", "event"] and body["content"] is None
    image, audio = body["attachments"]
    assert list(image) == ["id", "message_id", "file_type", "account_id", "extension", "content_type", "data_url",
                           "thumb_url", "file_size", "width", "height"]
    assert image["file_type"] == "image" and image["width"] is None and image["message_id"] == body["id"]
    assert "/rails/active_storage/blobs/redirect/" in image["data_url"]
    assert audio["file_type"] == "audio" and "transcribed_text" in audio and audio["thumb_url"] == ""


def test_conversation_and_other_events() -> None:
    world, conv = sample_conversation("whatsapp")
    created = conversation_event(conv, "conversation_created")
    assert shape(created) == shape(load("conversation_created.json"))
    updated = conversation_event(conv, "conversation_updated",
                                 [{"status": {"previous_value": "pending", "current_value": "open"}}])
    assert list(updated)[-2:] == ["event", "changed_attributes"]
    assert all(len(item) == 1 for item in updated["changed_attributes"])
    status_changed = conversation_event(conv, "conversation_status_changed")
    assert status_changed["changed_attributes"] is None
    assert "changed_attributes" not in conversation_event(conv, "conversation_opened")
    assert contact_event(conv.contact, conv.account, "contact_updated")["changed_attributes"] == []
    assert typing_event(conv, True, world.agent(12))["event"] == "conversation_typing_on"
    assert inbox_created(conv.inbox, conv.account)["event"] == "inbox_created"
    _, widget = sample_conversation("webwidget")
    triggered = webwidget_triggered(widget)
    assert triggered["source_id"] == widget.contact.source_id and "event_info" in triggered
