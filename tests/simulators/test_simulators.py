"""The simulators themselves: signatures, payload shapes, FakeChatwoot and FakeCrew over real HTTP."""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from simulators import FakeChatwoot, FakeCrew, run_customers
from simulators.loopback import serve, shut_down
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

REF = Path("/work/shared/reference/chatwoot-payloads")
SECRET = "Xk9vR2mQ7tLp4WcZ8bNs3hJd"
MESSAGE_KEYS = ["account", "additional_attributes", "content_attributes", "content_type", "content", "conversation",
                "created_at", "id", "inbox", "message_type", "private", "sender", "source_id", "event"]
CONVERSATION_KEYS = ["additional_attributes", "can_reply", "channel", "contact_inbox", "id", "inbox_id", "messages",
                     "labels", "meta", "status", "custom_attributes", "snoozed_until", "unread_count",
                     "first_reply_created_at", "priority", "waiting_since", "agent_last_seen_at",
                     "contact_last_seen_at", "last_activity_at", "timestamp", "created_at", "updated_at", "account"]
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def load(name: str) -> Any:
    return json.loads((REF / name).read_text(encoding="utf-8"))


def shape(obj: Any) -> Any:
    """Keys (in order) all the way down; list shape taken from the first element."""
    if isinstance(obj, dict):
        return [(k, shape(v)) for k, v in obj.items()]
    if isinstance(obj, list):
        return [shape(obj[0])] if obj else []
    return None


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


# ------------------------------------------------------------------------------------- receivers


class Receiver:
    """A tiny webhook receiver that checks Chatwoot's signature like a sidecar would."""

    def __init__(self, secret: str | None = None, api_key: str | None = None) -> None:
        self.secret = secret
        self.api_key = api_key
        self.received: list[dict[str, Any]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        headers = dict(request.headers)
        valid = True
        if self.secret:
            ts, sig = headers.get("X-Chatwoot-Timestamp"), headers.get("X-Chatwoot-Signature")
            valid = bool(ts and sig and verify(raw, self.secret, ts, sig))
        if self.api_key:
            valid = headers.get("Authorization") == f"Bearer {self.api_key}"
        self.received.append({"headers": headers, "raw": raw, "json": json.loads(raw), "valid": valid})
        if not valid:
            return web.json_response({"error": "bad signature"}, status=401)
        return web.json_response({"status": "accepted"})

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self._runner, base = await serve(app)
        self.url = f"{base}/hook"
        return self

    async def stop(self) -> None:
        await shut_down((), None, self._runner)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = await Receiver(secret="whsec-test-secret").start()
    yield rec
    await rec.stop()


@pytest.fixture
async def chatwoot(receiver: Receiver) -> AsyncIterator[FakeChatwoot]:
    async with FakeChatwoot(webhook_url=receiver.url, webhook_secret="whsec-test-secret") as cw:
        yield cw


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


def api(cw: FakeChatwoot, conv_id: int, suffix: str = "") -> str:
    return f"{cw.url}/api/v1/accounts/{cw.account_id}/conversations/{conv_id}{suffix}"


TOKEN = {"api_access_token": "cw-test-token"}


# ------------------------------------------------------------------------------------- FakeChatwoot


async def test_customer_message_is_signed_and_delivered(chatwoot: FakeChatwoot, receiver: Receiver) -> None:
    conv = chatwoot.open_conversation("whatsapp", contact_name="Mariana Souza")
    status, body = await chatwoot.customer_says(conv, "Oi! Meu pedido #48213 <urgente> & ainda não chegou")
    assert (status, body) == (200, {"status": "accepted"})
    got = receiver.received[-1]
    assert got["valid"] and got["headers"]["Content-Type"] == "application/json"
    assert re.fullmatch(r"[0-9a-f-]{36}", got["headers"]["X-Chatwoot-Delivery"])
    assert b"\\u003curgente\\u003e \\u0026" in got["raw"] and "não".encode() in got["raw"]
    assert got["json"]["id"] == 90000 and got["json"]["conversation"]["id"] == conv.display_id
    assert chatwoot.webhook_results[-1][1:3] == ("message_created", 200)
    await chatwoot.customer_says(conv, "?")
    assert [m["id"] for m in chatwoot.messages_in(conv.display_id)] == [90000, 90001]


async def test_send_event_can_forge_bad_deliveries(chatwoot: FakeChatwoot, receiver: Receiver) -> None:
    conv = chatwoot.open_conversation("facebook")
    status, _ = await chatwoot.send_event({"event": "message_created"}, secret="wrong-secret")
    assert status == 401
    status, _ = await chatwoot.send_event({"event": "x"}, headers={"X-Chatwoot-Signature": None})
    assert status == 401 and "X-Chatwoot-Signature" not in receiver.received[-1]["headers"]
    status, _ = await chatwoot.customer_says(conv, "hi", delivery_id="fixed-delivery")
    assert status == 200 and receiver.received[-1]["headers"]["X-Chatwoot-Delivery"] == "fixed-delivery"


async def test_status_and_assignment_events(chatwoot: FakeChatwoot, receiver: Receiver) -> None:
    conv = chatwoot.open_conversation("instagram", instagram_via_page=True)
    await chatwoot.resolve(conv)
    events = [r["json"] for r in receiver.received]
    assert [e["event"] for e in events] == ["conversation_updated", "conversation_status_changed"]
    assert events[0]["changed_attributes"] == [{"status": {"previous_value": "pending", "current_value": "resolved"}}]
    assert events[1]["changed_attributes"] is None and events[1]["status"] == "resolved"
    await chatwoot.customer_says(conv, "voltei")  # a resolved conversation comes back as pending
    assert chatwoot.status_of(conv.display_id) == "pending"
    assert receiver.received[-1]["json"]["conversation"]["status"] == "pending"
    await chatwoot.assign(conv, 12)
    assigned = receiver.received[-1]["json"]
    assert assigned["meta"]["assignee"]["id"] == 12 and assigned["meta"]["assignee_type"] == "User"


async def test_rest_calls_are_recorded(chatwoot: FakeChatwoot, http: aiohttp.ClientSession) -> None:
    conv = chatwoot.open_conversation("whatsapp", labels=["vip"])
    chatwoot.echo = False
    cid = conv.display_id
    async with http.post(api(chatwoot, cid, "/messages"), headers=TOKEN,
                         json={"content": "Olá!", "message_type": "outgoing", "private": False}) as resp:
        created = await resp.json()
    assert resp.status == 200 and list(created) == list(load("api/create_message_response.json"))
    assert created["message_type"] == 1 and created["sender"]["type"] == "agent_bot" and created["sender"]["id"] == 3
    async with http.post(api(chatwoot, cid, "/messages"), headers=TOKEN,
                         json={"content": "nota", "private": True}):
        pass
    async with http.post(api(chatwoot, cid, "/labels"), headers=TOKEN, json={"labels": ["vip", "lead"]}) as resp:
        assert await resp.json() == {"payload": ["vip", "lead"]}
    async with http.get(api(chatwoot, cid, "/labels"), headers=TOKEN) as resp:
        assert await resp.json() == {"payload": ["vip", "lead"]}
    async with http.post(api(chatwoot, cid, "/toggle_typing_status"), headers=TOKEN,
                         json={"typing_status": "on"}) as resp:
        assert resp.status == 200 and await resp.read() == b""
    async with http.post(api(chatwoot, cid, "/toggle_status"), headers=TOKEN, json={"status": "open"}) as resp:
        assert await resp.json() == {"meta": {}, "payload": {"success": None, "conversation_id": cid,
                                                             "current_status": "open", "snoozed_until": None}}
    async with http.post(api(chatwoot, cid, "/assignments"), headers=TOKEN, json={"team_id": 2}) as resp:
        assert (await resp.json())["name"] == "suporte"
    assert chatwoot.replies(cid) == ["Olá!"] and chatwoot.notes(cid) == ["nota"]
    assert chatwoot.labels_of(cid) == ["vip", "lead"] and chatwoot.typing(cid) == ["on"]
    assert chatwoot.status_of(cid) == "open" and chatwoot.handoffs == [cid]
    assert chatwoot.assignments(cid) == [{"team_id": 2}]
    assert [r.path.rsplit("/", 1)[-1] for r in chatwoot.requests][:2] == ["messages", "messages"]
    assert chatwoot.defects == []


async def test_rest_errors(chatwoot: FakeChatwoot, http: aiohttp.ClientSession) -> None:
    conv = chatwoot.open_conversation("webwidget")
    async with http.post(api(chatwoot, conv.display_id, "/messages"), headers={"api_access_token": "nope"},
                         json={"content": "x"}) as resp:
        assert resp.status == 401 and await resp.json() == {"error": "Invalid Access Token"}
    async with http.post(api(chatwoot, 424242, "/messages"), headers=TOKEN, json={"content": "x"}) as resp:
        assert resp.status == 404
    async with http.get(api(chatwoot, conv.display_id, "/messages"), headers=TOKEN) as resp:
        assert resp.status == 401
        assert await resp.json() == {"error": "Access to this endpoint is not authorized for bots"}
    async with http.post(api(chatwoot, conv.display_id, "/messages"), headers=TOKEN,
                         json={"content": "x", "source_id": "wamid.X"}) as resp:
        assert resp.status == 200
    assert len(chatwoot.defects) == 1 and "source_id" in chatwoot.defects[0]


async def test_user_token_lists_messages(receiver: Receiver, http: aiohttp.ClientSession) -> None:
    async with FakeChatwoot(token_kind="user", webhook_url=receiver.url, webhook_secret="whsec-test-secret") as cw:
        conv = cw.open_conversation("whatsapp")
        await cw.customer_says(conv, "Oi")
        async with http.post(api(cw, conv.display_id, "/messages"), headers=TOKEN, json={"content": "Olá"}) as resp:
            assert (await resp.json())["sender"]["id"] == 99
        async with http.get(api(cw, conv.display_id, "/messages"), headers=TOKEN) as resp:
            listed = await resp.json()
        assert set(listed) == {"meta", "payload"}
        assert [m["message_type"] for m in listed["payload"]] == [0, 1]
        await cw.wait_for(lambda: any(r[1] == "message_created" and r[0] for r in cw.webhook_results[1:]))
        echo = receiver.received[-1]["json"]
        assert echo["sender"]["type"] == "user" and echo["sender"]["id"] == 99


async def test_profile_checks_the_token_like_chatwoot(http: aiohttp.ClientSession) -> None:
    """GET /api/v1/profile: unknown token 401 "Invalid Access Token"; a bot token 401 "not
    authorized for bots" (found, but not allowed there); a user token gets its user."""
    async with FakeChatwoot(token_kind="agent_bot") as bot, FakeChatwoot(token_kind="user") as user:
        for cw in (bot, user):
            async with http.get(f"{cw.url}/api/v1/profile", headers={"api_access_token": "revoked"}) as resp:
                assert resp.status == 401 and await resp.json() == {"error": "Invalid Access Token"}
        async with http.get(f"{bot.url}/api/v1/profile", headers=TOKEN) as resp:
            assert resp.status == 401
            assert await resp.json() == {"error": "Access to this endpoint is not authorized for bots"}
        async with http.get(f"{user.url}/api/v1/profile", headers=TOKEN) as resp:
            assert resp.status == 200
            profile = await resp.json()
        assert profile["id"] == user.bot_user_id and profile["accounts"][0]["id"] == user.account_id


async def test_fail_next_with_retry_after(chatwoot: FakeChatwoot, http: aiohttp.ClientSession) -> None:
    conv = chatwoot.open_conversation("whatsapp")
    chatwoot.fail_next("messages", 2, 429, retry_after=0.5)
    statuses = []
    for _ in range(3):
        async with http.post(api(chatwoot, conv.display_id, "/messages"), headers=TOKEN,
                             json={"content": "oi"}) as resp:
            statuses.append((resp.status, resp.headers.get("Retry-After")))
    assert statuses == [(429, "0.5"), (429, "0.5"), (200, None)]
    assert chatwoot.replies(conv.display_id) == ["oi"]


async def test_drop_after_store_disconnects_but_stores(chatwoot: FakeChatwoot, http: aiohttp.ClientSession) -> None:
    conv = chatwoot.open_conversation("whatsapp")
    chatwoot.drop_after_store_next(1)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with http.post(api(chatwoot, conv.display_id, "/messages"), headers=TOKEN,
                             json={"content": "Seu pedido saiu para entrega"}) as resp:
            await resp.read()
    assert chatwoot.replies(conv.display_id) == ["Seu pedido saiu para entrega"]
    async with http.post(api(chatwoot, conv.display_id, "/messages"), headers=TOKEN, json={"content": "2"}) as resp:
        assert resp.status == 200  # only the next call was dropped


async def test_echo_after_create(chatwoot: FakeChatwoot, receiver: Receiver, http: aiohttp.ClientSession) -> None:
    conv = chatwoot.open_conversation("whatsapp")
    async with http.post(api(chatwoot, conv.display_id, "/messages"), headers=TOKEN,
                         json={"content": "Olá!", "private": False}) as resp:
        created = await resp.json()
    await chatwoot.wait_for(lambda: any(r[1] == "message_created" for r in chatwoot.webhook_results))
    echo = receiver.received[-1]["json"]
    assert echo["id"] == created["id"] and echo["message_type"] == "outgoing"
    assert echo["sender"] == {"id": 3, "name": "Acme Assistant", "type": "agent_bot"} and echo["source_id"] is None


async def test_echo_before_response(receiver: Receiver, http: aiohttp.ClientSession) -> None:
    async with FakeChatwoot(webhook_url=receiver.url, webhook_secret="whsec-test-secret",
                            echo_before_response=True) as cw:
        conv = cw.open_conversation("facebook")
        async with http.post(api(cw, conv.display_id, "/messages"), headers=TOKEN,
                             json={"content": "Hello!"}) as resp:
            created = await resp.json()
            # the receiver already holds the echo when the create call answers
            assert [r["json"]["id"] for r in receiver.received] == [created["id"]]


async def test_api_status_change_echoes_and_show(chatwoot: FakeChatwoot, receiver: Receiver,
                                                 http: aiohttp.ClientSession) -> None:
    conv = chatwoot.open_conversation("webwidget", status="open")
    async with http.post(api(chatwoot, conv.display_id, "/toggle_status"), headers=TOKEN,
                         json={"status": "resolved"}) as resp:
        assert (await resp.json())["payload"]["success"] is True
    assert chatwoot.status_of(conv.display_id) == "resolved"  # changed before the answer left
    await chatwoot.wait_for(lambda: any(r[1] == "conversation_status_changed" for r in chatwoot.webhook_results))
    async with http.get(api(chatwoot, conv.display_id), headers=TOKEN) as resp:
        shown = await resp.json()
    assert shown["id"] == conv.display_id and shown["status"] == "resolved" and shown["meta"]["channel"]


async def test_update_message_and_native_echo(chatwoot: FakeChatwoot, receiver: Receiver) -> None:
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.native_echo(conv, "digitado no app")
    echo = receiver.received[-1]["json"]
    assert echo["sender"] is None and echo["content_attributes"] == {"external_echo": True}
    await chatwoot.agent_says(conv, "Oi, aqui é o Carlos")
    await chatwoot.update_message(conv, receiver.received[-1]["json"]["id"])
    updated = receiver.received[-1]["json"]
    assert updated["event"] == "message_updated" and updated["source_id"].startswith("wamid.")
    assert updated["sender"]["type"] == "user" and updated["conversation"]["meta"]["assignee"]["id"] == 12


async def test_failed_bot_delivery_opens_pending_conversation(receiver: Receiver) -> None:
    async with FakeChatwoot(webhook_url=receiver.url, webhook_secret="not-the-receivers-secret",
                            handoff_on_bot_failure=True) as cw:
        conv = cw.open_conversation("whatsapp")
        status, _ = await cw.customer_says(conv, "Oi")
        assert status == 401 and cw.status_of(conv.display_id) == "open"
        assert cw.messages_in(conv.display_id)[-1]["message_type"] == "activity"


async def test_wait_for_times_out_with_a_message(chatwoot: FakeChatwoot) -> None:
    with pytest.raises(TimeoutError, match="still false"):
        await chatwoot.wait_for(lambda: False, timeout=0.05)


async def test_customers_write_on_all_channels(chatwoot: FakeChatwoot) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(run_customers(chatwoot, rate_per_second=200, stop=stop, rng=random.Random(1),
                                             conversations=8))
    await chatwoot.wait_for(lambda: len(chatwoot.webhook_results) >= 10)
    stop.set()
    counts = await asyncio.wait_for(task, 5)
    channels = {c.inbox.channel_type for c in chatwoot.world.conversations.values()}
    assert channels == {"Channel::Whatsapp", "Channel::FacebookPage", "Channel::Instagram", "Channel::WebWidget"}
    assert any(c.instagram_via_page for c in chatwoot.world.conversations.values())
    assert counts["messages"] >= 1 and counts["errors"] == 0


# ------------------------------------------------------------------------------------- FakeCrew


@pytest.fixture
async def crew() -> AsyncIterator[FakeCrew]:
    async with FakeCrew() as fake:
        yield fake


BEARER = {"Authorization": "Bearer crew-test-key"}


def envelope(text: str, crew_name: str = "vendas", request_id: str = "req-1", callback: str = "") -> dict[str, Any]:
    return {"schema": "connector-v1", "request_id": request_id, "crew": crew_name, "routing": {"source": "rules"},
            "chatwoot": {"account": 7, "conversation": 1093, "channel": "whatsapp"}, "contact": {"name": "Mariana"},
            "messages": [{"id": 90000, "content": text}], "history": [], "callback_url": callback}


async def test_crew_sync_answer_and_auth(crew: FakeCrew, http: aiohttp.ClientSession) -> None:
    async with http.post(crew.crew_url, json=envelope("Quanto custa a barraca?"),
                         headers={**BEARER, "Idempotency-Key": "req-1"}) as resp:
        answer = await resp.json()
    assert resp.status == 200 and answer["actions"][0]["type"] == "reply" and "R$" in answer["actions"][0]["content"]
    async with http.post(crew.crew_url, json=envelope("I want a human agent", "suporte", "req-2"),
                         headers={**BEARER, "Idempotency-Key": "req-2"}) as resp:
        handoff = (await resp.json())["actions"][0]
    assert handoff["type"] == "handoff" and handoff["message"]
    async with http.post(crew.crew_url, json=envelope("x"), headers={"Authorization": "Bearer nope"}) as resp:
        assert resp.status == 401
    async with http.get(crew.url + "/health") as resp:
        assert resp.status == 200


async def test_crew_deduplicates_by_idempotency_key(crew: FakeCrew, http: aiohttp.ClientSession) -> None:
    crew.responder = lambda env: [{"type": "reply", "content": f"n={len(crew.unique_requests())}"}]
    answers = []
    for _ in range(3):
        async with http.post(crew.crew_url, json=envelope("oi"), headers={**BEARER, "Idempotency-Key": "k1"}) as resp:
            answers.append(await resp.json())
    assert answers == [answers[0]] * 3 and crew.duplicates == 2 and crew.unique_requests() == ["k1"]
    assert crew.requests[0].headers["Idempotency-Key"] == "k1" and len(crew.crew_requests()) == 3


async def test_crew_fail_next_then_succeeds(crew: FakeCrew, http: aiohttp.ClientSession) -> None:
    crew.fail_next(1, 429, retry_after=2)
    crew.fail_next(1, 503)
    seen = []
    for _ in range(3):
        async with http.post(crew.crew_url, json=envelope("oi"), headers={**BEARER, "Idempotency-Key": "k"}) as resp:
            seen.append((resp.status, resp.headers.get("Retry-After")))
    assert seen == [(429, "2"), (503, None), (200, None)]
    crew.fail_always(500)
    async with http.post(crew.crew_url, json=envelope("oi"), headers={**BEARER, "Idempotency-Key": "z"}) as resp:
        assert resp.status == 500


async def test_crew_drop_and_hang(crew: FakeCrew, http: aiohttp.ClientSession) -> None:
    crew.drop_next(1)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with http.post(crew.crew_url, json=envelope("oi"), headers=BEARER) as resp:
            await resp.read()
    crew.hang_next(1)
    with pytest.raises(TimeoutError):
        async with http.post(crew.crew_url, json=envelope("oi"), headers=BEARER,
                             timeout=aiohttp.ClientTimeout(total=0.2)) as resp:
            await resp.read()


async def test_crew_async_mode_calls_back(crew: FakeCrew, http: aiohttp.ClientSession) -> None:
    callback = await Receiver(api_key="crew-test-key").start()
    try:
        crew.mode = "async"
        crew.double_callback = True
        async with http.post(crew.crew_url, json=envelope("Qual o horário?", "faq", "req-9", callback.url),
                             headers={**BEARER, "Idempotency-Key": "req-9"}) as resp:
            assert resp.status == 202 and await resp.json() == {"status": "accepted"}
        await crew.wait_for(lambda: len(crew.callbacks_sent) == 2)
        assert [c["status"] for c in crew.callbacks_sent] == [200, 200]
        doc = callback.received[0]["json"]
        assert doc["request_id"] == "req-9" and "8h" in doc["actions"][0]["content"]
        assert all(r["valid"] for r in callback.received)
    finally:
        await callback.stop()


async def test_chatwootai_dialect(crew: FakeCrew, http: aiohttp.ClientSession) -> None:
    body = {"action": "process_message", "data": {"message": "What are your opening hours?", "message_id": 1,
                                                  "conversation_id": 1093, "sender": {"id": 1}, "channel": "whatsapp",
                                                  "context": []}}
    async with http.post(crew.chatwootai_url, json=body, headers=BEARER) as resp:
        answer = await resp.json()
    assert answer["auto_reply"] is True and "open" in answer["reply_content"]


@pytest.mark.parametrize(("mode", "status", "crew_name"), [
    ("ok", 200, "vendas"), ("error", 500, None), ("unknown_crew", 200, "crew_that_does_not_exist"),
])
async def test_decision_engine_modes(crew: FakeCrew, http: aiohttp.ClientSession, mode: str, status: int,
                                     crew_name: str | None) -> None:
    crew.decision_mode = mode  # type: ignore[assignment]
    body = {"request_id": "d1", "message": "qual o preço da mochila?", "conversation": {}, "contact": {},
            "channel": "whatsapp", "context": [], "candidates": ["vendas", "suporte", "faq"], "suggested_crew": "faq"}
    async with http.post(crew.decide_url, json=body, headers=BEARER) as resp:
        assert resp.status == status
        if crew_name:
            answer = await resp.json()
            assert answer["crew"] == crew_name and set(answer) == {"crew", "confidence", "reason", "handoff"}
    assert crew.decisions() == [body]


async def test_decision_engine_hang_and_fallback_pick(crew: FakeCrew, http: aiohttp.ClientSession) -> None:
    body = {"message": {"content": "onde está meu pedido?"}, "candidates": ["sales", "support"],
            "suggested_crew": "sales"}
    async with http.post(crew.decide_url, json=body, headers=BEARER) as resp:
        assert (await resp.json())["crew"] == "support"
    crew.decision_mode = "hang"
    with pytest.raises(TimeoutError):
        async with http.post(crew.decide_url, json=body, headers=BEARER,
                             timeout=aiohttp.ClientTimeout(total=0.2)) as resp:
            await resp.read()
