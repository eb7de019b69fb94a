"""Outcome analytics for a scripted run: GET /stats (admin token), the Prometheus counters, and
the numbers they show: conversations served, resolved by the bot, reopened, hand-offs and their
reasons, reply latency, CSAT, shadow answers."""

from __future__ import annotations

from typing import Any

from simulators import FakeChatwoot, FakeCrew
from simulators.fake_crew import default_responder, envelope_text
from simulators.payloads import FakeConversation
from tests.conftest import SidecarFactory
from tests.harness import ADMIN_TOKEN, InProcessSidecar
from tests.waiting import wait_until

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CONFIG = {"routing": {"rules": [
    {"channel": "whatsapp", "crew": "whatsapp_crew", "name": "wa", "shadow_crew": "trial_crew"},
    {"channel": "facebook", "crew": "facebook_crew", "name": "fb"}]}}


def responder(envelope: dict[str, Any]) -> list[dict[str, Any]]:
    """The default answers, and "obrigado" closes the conversation (the bot resolves it)."""
    if "obrigado" in envelope_text(envelope).lower():
        return [{"type": "reply", "content": "Por nada!"}, {"type": "resolve"}]
    return default_responder(envelope)


async def stats(sidecar: InProcessSidecar, query: str = "", headers: dict[str, str] | None = None
                ) -> tuple[int, dict[str, Any]]:
    status, body, _ = await sidecar.client.get(f"/stats{query}", headers=AUTH if headers is None else headers)
    return status, body


async def _answered(chatwoot: FakeChatwoot, conv: FakeConversation, text: str) -> None:
    before = len(chatwoot.replies(conv.display_id))
    await chatwoot.customer_says(conv, text)
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == before + 1)


async def _resolved_by_bot(chatwoot: FakeChatwoot, conv: FakeConversation, sidecar: InProcessSidecar) -> None:
    await _answered(chatwoot, conv, "obrigado!")
    await chatwoot.wait_for(lambda: chatwoot.status_of(conv.display_id) == "resolved")
    # The customer comes back later, not within the same milliseconds: the resolve's webhooks and
    # the reopen's may arrive in either order then, and the sidecar only keeps the newest state
    # (a resolve it never saw is not counted).
    await wait_until(lambda: _stored_status(sidecar, conv) == "resolved", what="the resolve applied")


def _stored_status(sidecar: InProcessSidecar, conv: FakeConversation) -> str | None:
    row = sidecar.query(lambda tx: tx.conversations.get(conv.account.id, conv.display_id))
    return row.status if row is not None else None


async def scripted_run(chatwoot: FakeChatwoot, crew: FakeCrew, sidecar: InProcessSidecar) -> None:
    crew.responder = responder
    happy, reopened, human = (chatwoot.open_conversation("whatsapp"), chatwoot.open_conversation("whatsapp"),
                              chatwoot.open_conversation("facebook"))
    # 1. Answered, resolved by the bot, rated 5.
    await _answered(chatwoot, happy, "Quanto custa a barraca?")
    await _resolved_by_bot(chatwoot, happy, sidecar)
    survey = await chatwoot.csat_survey(happy)
    await chatwoot.csat_response(happy, survey, 5)
    await chatwoot.csat_response(happy, survey, 5, "great")  # Chatwoot sends updates again: counted once
    # 2. Resolved by the bot, then the customer comes back (reopened), rated 2.
    await _answered(chatwoot, reopened, "Onde está meu pedido 48213?")
    await _resolved_by_bot(chatwoot, reopened, sidecar)
    await _answered(chatwoot, reopened, "Não chegou ainda")
    survey = await chatwoot.csat_survey(reopened)
    await chatwoot.csat_response(reopened, survey, 2)
    # 3. Handed to a human at the customer's request.
    await chatwoot.customer_says(human, "I want to talk to a human")
    await chatwoot.wait_for(lambda: "handoff-customer-request" in chatwoot.labels_of(human.display_id))


async def test_stats_for_a_scripted_run(sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot,
                                        crew: FakeCrew) -> None:
    sidecar = await sidecar_factory(CONFIG)
    await scripted_run(chatwoot, crew, sidecar)
    # Every message on WhatsApp was also answered by the shadow crew (5 of them), into the record only.
    body = await wait_until(lambda: _settled(sidecar), what="all outcomes recorded")
    totals, wa, fb = body["totals"], body["rules"]["wa"], body["rules"]["fb"]
    assert body["window"] == "24h"
    assert totals["conversations"] == 3
    assert totals["answered"] == 5  # bot answers on WhatsApp; a hand-off is not an answer
    assert totals["resolved_by_bot"] == 2 and totals["resolved_by_bot_rate"] == round(2 / 3, 4)
    assert totals["reopened"] == 1 and totals["reopen_rate"] == 0.5
    assert totals["handoffs"] == 1 and totals["handoff_reasons"] == {"customer_request": 1}
    assert totals["handoff_rate"] == round(1 / 3, 4)
    assert totals["csat_responses"] == 2 and totals["csat_average"] == 3.5
    assert totals["shadow_answers"] == 5 and totals["drafts"] == 0
    assert 0 < totals["reply_latency_p50_seconds"] <= totals["reply_latency_p95_seconds"] < 10
    assert (wa["conversations"], wa["resolved_by_bot"], wa["reopened"], wa["handoffs"]) == (2, 2, 1, 0)
    assert (fb["conversations"], fb["handoffs"], fb["handoff_rate"], fb["resolved_by_bot_rate"]) == (1, 1, 1.0, 0.0)
    assert body["crews"]["trial_crew"]["shadow_answers"] == 5 and body["crews"]["trial_crew"]["conversations"] == 0
    assert body["crews"]["whatsapp_crew"]["csat_average"] == 3.5

    status, week = await stats(sidecar, "?window=7d")
    assert status == 200 and week["window"] == "7d" and week["totals"] == totals

    metrics = await _metrics(sidecar)
    assert 'connector_outcomes_total{crew="whatsapp_crew",kind="resolved_by_bot",rule="wa"} 2' in metrics
    assert 'connector_outcomes_total{crew="whatsapp_crew",kind="reopened",rule="wa"} 1' in metrics
    assert 'connector_outcomes_total{crew="trial_crew",kind="shadow",rule="wa"} 5' in metrics
    assert 'connector_handoffs_total{category="customer_request",crew="facebook_crew",rule="fb"} 1' in metrics
    assert 'connector_csat_responses_total{crew="whatsapp_crew",rating="5",rule="wa"} 1' in metrics
    assert 'connector_reply_latency_seconds_count{crew="whatsapp_crew",rule="wa"} 5' in metrics


async def _settled(sidecar: InProcessSidecar) -> dict[str, Any] | None:
    status, body = await stats(sidecar)
    assert status == 200
    totals = body["totals"]
    # Each figure is committed just after its Chatwoot call answered: wait for all of them.
    done = (totals["shadow_answers"], totals["csat_responses"], totals["answered"], totals["handoffs"]) == (5, 2, 5, 1)
    return body if done else None


async def _metrics(sidecar: InProcessSidecar) -> list[str]:
    _, _, text = await sidecar.client.get("/metrics")
    return text.splitlines()


async def test_stats_needs_the_admin_token_and_a_known_window(sidecar: InProcessSidecar) -> None:
    status, body = await stats(sidecar, headers={})
    assert status == 401 and body["status"] == "unauthorized"
    status, body = await stats(sidecar, headers={"Authorization": "Bearer wrong"})
    assert status == 401
    status, body = await stats(sidecar, "?window=1y")
    assert status == 400 and "window" in body["error"]
    status, body = await stats(sidecar)
    assert status == 200 and body["totals"]["conversations"] == 0 and body["totals"]["handoff_rate"] is None
