"""The crew side of the message path: debounce, retries, failure policy, hand-off, routing, dialects."""

from __future__ import annotations

from simulators import FakeChatwoot, FakeCrew
from tests.conftest import SidecarFactory
from tests.harness import InProcessSidecar
from tests.waiting import wait_until


async def test_a_burst_within_the_debounce_window_gives_one_crew_request(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    """Three quick messages: one crew request holding all three, one reply."""
    await sidecar_factory({"processing": {"debounce_seconds": 0.6, "debounce_max_seconds": 3.0}})
    conv = chatwoot.open_conversation("whatsapp")
    for text in ("oi", "meu pedido 48213", "ainda não chegou"):
        status, body = await chatwoot.customer_says(conv, text)
        assert body["status"] == "accepted"
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)
    [envelope] = crew.crew_requests()
    assert [m["content"] for m in envelope["messages"]] == ["oi", "meu pedido 48213", "ainda não chegou"]


async def test_history_goes_with_each_request(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    """The last context.max_messages messages (customer and bot) travel with the request."""
    await sidecar_factory({"context": {"max_messages": 3}})
    conv = chatwoot.open_conversation("facebook", status="open")
    for n in range(3):
        await chatwoot.customer_says(conv, f"question {n}")
        await chatwoot.wait_for(lambda n=n: len(chatwoot.replies(conv.display_id)) == n + 1)
    last = crew.crew_requests()[-1]
    assert len(last["history"]) == 3
    assert {turn["role"] for turn in last["history"]} == {"customer", "bot"}
    assert last["messages"][0]["content"] == "question 2"


async def test_crew_503_then_200_is_retried_with_the_same_key_and_answered_once(
    sidecar: InProcessSidecar, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    crew.fail_next(2, 503, retry_after=0.1)
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "Olá")
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)
    keys = [r.headers["Idempotency-Key"] for r in crew.requests if r.kind == "crew"]
    assert len(keys) == 3 and len(set(keys)) == 1
    assert chatwoot.typing(conv.display_id) == []  # WhatsApp never shows Chatwoot's typing
    attempts = sidecar.query(lambda s: s.decisions.attempts_for_jobs([1]))
    assert [a.outcome for a in attempts] == ["retry", "retry", "answered"]


async def test_crew_down_for_good_ends_in_dead_letter_note_and_handoff(
    sidecar: InProcessSidecar, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    crew.fail_always(503)
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "Alguém aí?")
    await chatwoot.wait_for(lambda: chatwoot.status_of(conv.display_id) == "open")
    assert len(chatwoot.notes(conv.display_id)) == 1 and "could not answer" in chatwoot.notes(conv.display_id)[0]
    assert chatwoot.replies(conv.display_id) == []
    assert len(crew.crew_requests()) == 4  # processing.max_attempts in the harness
    assert await _wait_job_state(sidecar, "dead")
    [dead] = sidecar.query(lambda s: s.dead_letters())
    assert "HTTP 503" in dead.reason
    row = sidecar.query(lambda s: s.conversations.get(7, conv.display_id))
    assert row.owner == "human"


async def test_a_4xx_is_final_after_one_attempt(sidecar: InProcessSidecar, chatwoot: FakeChatwoot, crew: FakeCrew) -> None:
    crew.fail_next(1, 400)
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "Olá")
    await chatwoot.wait_for(lambda: chatwoot.status_of(conv.display_id) == "open")
    assert len(crew.crew_requests()) == 1
    assert await _wait_job_state(sidecar, "dead")
    [dead] = sidecar.query(lambda s: s.dead_letters())
    assert "HTTP 400" in dead.reason


async def test_handoff_action_posts_the_message_and_opens_the_conversation(
    sidecar: InProcessSidecar, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    crew.responder = lambda env: [{"type": "handoff", "reason": "angry customer", "message": "Vou te transferir.",
                                   "team_id": 4}]
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "Quero cancelar tudo!")
    await chatwoot.wait_for(lambda: chatwoot.status_of(conv.display_id) == "open"
                            and chatwoot.assignments(conv.display_id) != [])
    assert chatwoot.replies(conv.display_id) == ["Vou te transferir."]
    assert chatwoot.assignments(conv.display_id)[0].get("team_id") == 4
    await chatwoot.customer_says(conv, "Alô?")
    outcome, reason = await sidecar.outcome(chatwoot.webhook_results[-1][0])
    assert outcome == "ignored" and "handed off" in reason


async def test_labels_note_and_resolve_actions(sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot,
                                               crew: FakeCrew) -> None:
    # typing_delay_seconds 0: "typing…" is shown as soon as the crew is asked.
    await sidecar_factory({"chatwoot": {"typing_delay_seconds": 0}})
    crew.responder = lambda env: [
        {"type": "reply", "content": "Pronto, resolvido."},
        {"type": "labels", "add": ["lead", "vip"]},
        {"type": "note", "content": "crew=vendas confidence 0.8"},
        {"type": "resolve"},
    ]
    conv = chatwoot.open_conversation("webwidget", labels=["existing"])
    await chatwoot.customer_says(conv, "Quero comprar")
    await chatwoot.wait_for(lambda: chatwoot.status_of(conv.display_id) == "resolved")
    assert chatwoot.replies(conv.display_id) == ["Pronto, resolvido."]
    assert chatwoot.notes(conv.display_id) == ["crew=vendas confidence 0.8"]
    assert chatwoot.labels_of(conv.display_id) == ["existing", "lead", "vip"]
    typing = chatwoot.typing(conv.display_id)
    assert typing[:1] == ["on"] and typing[-1] == "off"


async def test_a_quick_crew_shows_no_typing_and_a_slow_one_does(sidecar_factory: SidecarFactory,
                                                               chatwoot: FakeChatwoot, crew: FakeCrew) -> None:
    """Typing calls cost a Chatwoot call each: only a crew slower than typing_delay_seconds gets them."""
    await sidecar_factory({"chatwoot": {"typing_delay_seconds": 0.3}})
    quick = chatwoot.open_conversation("webwidget")
    await chatwoot.customer_says(quick, "oi")
    await chatwoot.wait_for(lambda: len(chatwoot.replies(quick.display_id)) == 1)
    assert chatwoot.typing(quick.display_id) == []
    crew.latency = 1.0
    slow = chatwoot.open_conversation("webwidget")
    await chatwoot.customer_says(slow, "oi")
    await chatwoot.wait_for(lambda: len(chatwoot.replies(slow.display_id)) == 1)
    assert chatwoot.typing(slow.display_id) == ["on", "off"]


async def test_an_empty_action_list_says_nothing(sidecar: InProcessSidecar, chatwoot: FakeChatwoot, crew: FakeCrew) -> None:
    crew.responder = lambda env: []
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "ok")
    await crew.wait_for(lambda: len(crew.crew_requests()) == 1)
    done = await _wait_job_state(sidecar, "done")
    assert done and chatwoot.replies(conv.display_id) == []


async def _wait_job_state(proc: InProcessSidecar, state: str) -> bool:
    """Waits for a job in ``state`` (a committed row: no event tells the test)."""
    return await wait_until(lambda: proc.query(lambda s: s.sql.scalar("SELECT count(*) FROM jobs WHERE state=?",
                                                                       (state,))), what=f"a job {state}") > 0


async def test_decision_engine_timeout_falls_back_to_the_rules(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    proc = await sidecar_factory({
        "mcp_crew": {"decision_engine_url": crew.decide_url},
        # "vendas" is a known crew only because it has its own entry: the engine may only
        # pick crews the sidecar knows (an unknown pick falls back to the rules).
        "crews": {"vendas": {"backend": "http", "url": crew.crew_url, "token": crew.api_key}},
    })
    crew.decision_mode = "hang"
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "Qual o preço da barraca?")
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)
    [decision] = proc.query(lambda s: s.decisions.recent())
    assert (decision.crew, decision.source) == ("whatsapp_crew", "fallback")
    assert "timed out" in decision.reason
    crew.decision_mode = "ok"
    await chatwoot.customer_says(conv, "E o preço da mochila?")
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 2)
    latest = proc.query(lambda s: s.decisions.recent())[0]
    assert (latest.crew, latest.source) == ("vendas", "engine")
    assert crew.decisions()[-1]["suggested_crew"] == "whatsapp_crew"


async def test_asynchronous_answer_by_callback_and_a_second_callback_changes_nothing(
    sidecar: InProcessSidecar, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    crew.mode = "async"
    crew.double_callback = True
    conv = chatwoot.open_conversation("webwidget")
    await chatwoot.customer_says(conv, "Hello, do you ship to Canada?")
    await crew.wait_for(lambda: len(crew.callbacks_sent) == 2)
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)
    assert sorted(c["status"] for c in crew.callbacks_sent) == [200, 200]
    assert len(chatwoot.replies(conv.display_id)) == 1


async def test_chatwootai_dialect(sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew) -> None:
    """The seed's own MCP-Crew: {"action":"process_message"} -> {"auto_reply","reply_content"}."""
    await sidecar_factory({"mcp_crew": {"dialect": "chatwootai", "api_url": crew.chatwootai_url}})
    conv = chatwoot.open_conversation("instagram")
    await chatwoot.customer_says(conv, "Oi, vocês abrem sábado?")
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)
    [request] = [r.body for r in crew.requests if r.kind == "chatwootai"]
    assert request["action"] == "process_message"
    assert request["data"]["channel"] == "instagram" and "sábado" in request["data"]["message"]


async def test_chatwoot_429_and_5xx_are_retried_without_asking_the_crew_again(
    sidecar: InProcessSidecar, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    chatwoot.fail_next("messages", 1, 429, retry_after=0.1)
    chatwoot.fail_next("messages", 1, 503)
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "Oi")
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)
    assert len(crew.crew_requests()) == 1
    assert len(chatwoot.calls("messages")) == 3
