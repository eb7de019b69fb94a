"""Pure pieces of the message path: signature, normalisation, routing, ownership, backoff, breaker."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from sidecar.config import config_from_mapping
from sidecar.crew.breaker import CLOSED, HALF_OPEN, OPEN, BreakerSettings, CircuitBreaker
from sidecar.inbound import ownership
from sidecar.inbound.payload import normalize
from sidecar.inbound.signature import verify_signature
from sidecar.outbound.chatwoot import probe_verdict
from sidecar.queue.retry import parse_retry_after, retry_delay
from sidecar.queue.routing import RoutingInput, decide_by_rules, fold

PAYLOADS = Path("/work/shared/reference/chatwoot-payloads")
SHORT = (b'{"account":{"id":7,"name":"Acme Outdoor"},"content":"Pedido #48213 \\u003curgente\\u003e \\u0026 '
         b'obrigado! \xc3\xa7\xc3\xa3o \xf0\x9f\x98\x9f","id":90211,"message_type":"incoming","event":"message_created"}')


def _headers(sig: str, ts: str = "1784034313") -> dict[str, str]:
    return {"x-chatwoot-signature": sig, "x-chatwoot-timestamp": ts}


def test_chatwoot_worked_example_verifies_and_common_mistakes_do_not() -> None:
    good = "sha256=6aae73c1e39ccefe6a0560cdd9cba230d5d2535f569fb8d09cbe4d03cab361b2"
    check = verify_signature(SHORT, _headers(good), ["other-secret", "Xk9vR2mQ7tLp4WcZ8bNs3hJd"],
                             now=1784034313, tolerance=300, allow_unsigned=False)
    assert check.ok
    body_only = "sha256=b13bdb8d27fcb10287a2f5848f4e43bfe3ce7ee9e2b38da9a79fbf74749ce74d"
    assert not verify_signature(SHORT, _headers(body_only), ["Xk9vR2mQ7tLp4WcZ8bNs3hJd"], now=1784034313,
                                tolerance=300, allow_unsigned=False).ok
    stale = verify_signature(SHORT, _headers(good), ["Xk9vR2mQ7tLp4WcZ8bNs3hJd"], now=1784034313 + 301,
                             tolerance=300, allow_unsigned=False)
    assert not stale.ok and "timestamp" in stale.reason


@pytest.mark.skipif(not PAYLOADS.exists(), reason="shared reference payloads not present")
def test_reference_payloads_normalise() -> None:
    whatsapp = normalize(json.loads((PAYLOADS / "message_created_incoming_whatsapp.json").read_text()))
    assert whatsapp.conversation.channel == "whatsapp" and whatsapp.conversation.conversation_id == 1093
    assert whatsapp.message.message_type == "incoming" and whatsapp.message.sender_kind == "contact"
    bot = normalize(json.loads((PAYLOADS / "message_created_outgoing_bot_reply.json").read_text()))
    assert bot.message.sender_kind == "agent_bot"
    assert ownership.message_role(bot.message, is_own=False) == "bot"
    note = normalize(json.loads((PAYLOADS / "message_created_private_note.json").read_text()))
    assert ownership.message_role(note.message, is_own=False) == "note"
    status = normalize(json.loads((PAYLOADS / "conversation_status_changed.json").read_text()))
    assert status.conversation.status == "resolved" and status.conversation.assignee_type == "User"


@pytest.mark.parametrize("body", [
    {}, {"event": None}, {"event": "message_created", "conversation": "x", "sender": [], "id": "abc"},
    {"event": "message_created", "conversation": {"id": True, "meta": 5}, "attachments": "no"},
    {"event": "conversation_updated", "changed_attributes": [1, {"status": 3}]},
])
def test_normalise_never_raises_on_odd_shapes(body: dict) -> None:
    normalize(body)


def test_rules_match_channel_keywords_accents_labels_and_pattern() -> None:
    config = config_from_mapping({"routing": {"default_crew": "suporte", "rules": [
        {"channel": "whatsapp", "keywords": ["preço", "price"], "crew": "vendas"},
        {"labels": ["vip"], "crew": "vip"},
        {"pattern": r"#\d{5}", "crew": "pedidos"},
        {"inbox_id": 24, "crew": "site"},
    ]}}, env={})
    def pick(**kw: object) -> tuple[str, str]:
        item = RoutingInput(**{"channel": "facebook", "inbox_id": 1, "text": "", "labels": (), **kw})
        d = decide_by_rules(config, item)
        return d.crew, d.source
    assert pick(channel="whatsapp", text="Qual o PRECO?") == ("vendas", "rules")
    assert pick(channel="facebook", text="qual o preço") == ("suporte", "default")
    assert pick(channel="whatsapp", text="apreçoado") == ("suporte", "default")  # whole words only
    assert pick(labels=("vip",)) == ("vip", "rules")
    assert pick(text="pedido #48213") == ("pedidos", "rules")
    assert pick(inbox_id=24) == ("site", "rules")
    assert fold("Ação É") == "acao e"


def test_backoff_is_full_jitter_capped_and_honours_retry_after() -> None:
    rng = random.Random(1)
    delays = [retry_delay(n, base=5, maximum=1800, rng=rng) for n in range(1, 12)]
    assert all(0 <= d <= min(1800, 5 * 2 ** (n - 1)) for n, d in enumerate(delays, 1))
    assert retry_delay(1, base=5, maximum=1800, retry_after=120, rng=rng) >= 120
    assert retry_delay(1, base=5, maximum=60, retry_after=999, rng=rng) <= 60
    assert parse_retry_after("7") == 7.0 and parse_retry_after("Wed, 21 Oct") is None


def test_breaker_opens_probes_and_closes() -> None:
    clock = [0.0]
    breaker = CircuitBreaker("x", lambda: BreakerSettings(0.7, 4, 30), clock=lambda: clock[0])
    for ok in (True, False, False, False):
        assert breaker.allow()
        breaker.record(ok)
    assert breaker.state == OPEN and not breaker.allow()
    clock[0] = 31
    assert breaker.allow() and breaker.state == HALF_OPEN
    assert not breaker.allow()  # one probe at a time
    breaker.record(True)
    assert breaker.state == CLOSED and breaker.allow()
    off = CircuitBreaker("y", lambda: BreakerSettings(0.7, 0, 30))
    for _ in range(20):
        off.record(False)
    assert off.allow()


@pytest.mark.parametrize(("status", "body", "ok", "detail"), [
    (200, "", True, "token accepted (user token)"),
    (401, '{"error":"Access to this endpoint is not authorized for bots"}', True, "token accepted (agent-bot token)"),
    (401, '{"error":"Invalid Access Token"}', False, "token refused (HTTP 401): check chatwoot.api_access_token"),
    (401, "", False, "token refused (HTTP 401): check chatwoot.api_access_token"),
    (429, "Retry later", True, "reachable, rate limited (HTTP 429): token not checked this time"),
    (301, "", False, "redirected (HTTP 301): set chatwoot.api_url to the address Chatwoot answers on"),
    (404, "", False, "HTTP 404 for /api/v1/profile: is chatwoot.api_url the address of Chatwoot?"),
    (502, "", False, "HTTP 502"),
])
def test_chatwoot_probe_verdicts(status: int, body: str, ok: bool, detail: str) -> None:
    """Only a live token is ok: a bot token's "not for bots" 401 proves the token was found."""
    assert probe_verdict(status, body) == (ok, detail)
