"""FakeChatwoot over real HTTP: signed webhooks out, the REST subset in, its faults and echoes."""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest

from simulators import FakeChatwoot, run_customers
from tests.simulators.helpers import Receiver, load


@pytest.fixture
async def chatwoot(receiver: Receiver) -> AsyncIterator[FakeChatwoot]:
    async with FakeChatwoot(webhook_url=receiver.url, webhook_secret="whsec-test-secret") as cw:
        yield cw


def api(cw: FakeChatwoot, conv_id: int, suffix: str = "") -> str:
    return f"{cw.url}/api/v1/accounts/{cw.account_id}/conversations/{conv_id}{suffix}"


TOKEN = {"api_access_token": "cw-test-token"}



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
