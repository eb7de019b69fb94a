"""FakeCrew over real HTTP: answers, idempotency, faults, callbacks, dialects, the decision engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from simulators import FakeCrew
from tests.simulators.helpers import Receiver


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
