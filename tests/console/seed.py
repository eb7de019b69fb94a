"""Provides a deterministic database for the console tests, written through ``state`` only."""

from __future__ import annotations

import json
from typing import Any

from state import Database, Job, Route, Tx, open_database
from state.vocabulary import CONFIG_EFFECTIVE, CONFIG_STATUS, HEALTH_SNAPSHOT, RETENTION_STATUS

T0 = 1_700_000_000.0
"""When the seeded story starts (fixed, so ages on screen are stable)."""
NOW = T0 + 600.0
"""The fixed "now" the tests give the console."""
HOSTILE = "[bold]not bold[/] [red]x[/red] [/] [link=http://evil]click[/link] \x1b[31mESC\x1b[0m"
RTL = "مرحبا، أريد معرفة السعر 🙂 שלום"
LONG = "A" * 10_000

HEALTH = {
    "status": "degraded",
    "at": NOW - 5,
    "warnings": ["crew back-end suporte: circuit breaker open"],
    "checks": {
        "database": {"status": "ok", "detail": "write probe 2ms", "latency_ms": 2.0, "checked_at": NOW - 5},
        "chatwoot": {"status": "ok", "detail": "", "latency_ms": 41.0, "checked_at": NOW - 5},
        "mcp_crew": {"status": "down", "detail": "connection refused", "latency_ms": None,
                     "checked_at": NOW - 5},
        "decision_engine": {"status": "disabled", "detail": "local rules", "latency_ms": None,
                            "checked_at": None},
        "queue": {"status": "ok", "depth": 1, "oldest_pending_age": 30.0, "dead_letters": 1},
        "backends": {
            "vendas": {"status": "ok", "kind": "http", "detail": "", "in_flight": 3, "waiting": 0, "limit": 4096,
                       "breaker": {"state": "closed", "recent_requests": 12, "recent_failures": 0}},
            "suporte": {"status": "down", "kind": "mcp", "detail": "timeout", "in_flight": 8, "waiting": 5,
                        "limit": 8, "breaker": {"state": "open", "recent_requests": 10, "recent_failures": 9}},
        },
    },
}
EFFECTIVE = {
    "server": {"host": "0.0.0.0", "port": 5000, "admin_token": "****abcd"},
    "state": {"path": "data/connector.db"},
    "chatwoot": {"api_url": "http://chatwoot:3000", "api_access_token": "****wxyz"},
    "health": {"probe_interval_seconds": 15},
}

CONVERSATIONS: list[dict[str, Any]] = [
    {"id": 101, "channel": "whatsapp", "inbox": "WhatsApp Vendas", "contact": "Ana Souza", "crew": "vendas"},
    {"id": 102, "channel": "facebook", "inbox": "Facebook Page", "contact": "Bruno Lima", "crew": "suporte"},
    {"id": 103, "channel": "instagram", "inbox": "Insta", "contact": "[bold]Eve[/]", "crew": "faq"},
    {"id": 104, "channel": "webwidget", "inbox": "Site", "contact": RTL, "crew": "vendas"},
]


def _insert_message(tx: Any, conv: int, mid: int, role: str, content: str, at: float) -> None:
    tx.messages.insert(account_id=1, conversation_id=conv, message_id=mid, role=role,
                      sender_type={"customer": "contact", "bot": "agent_bot"}.get(role, "user"),
                      sender_id=None, content=content, content_type="text", attachments=[],
                      private=role == "note", content_hash=f"h{mid}", created_at=at)


def seed(path: str) -> None:
    """Creates a small, complete story: 4 conversations, a served job, a dead letter."""
    store = open_database(path, migrate=True)
    try:
        _seed(store)
    finally:
        store.close()


def _seed(store: Database) -> None:
    with store.transaction() as tx:
        for i, c in enumerate(CONVERSATIONS):
            at = T0 + 60 * i
            tx.conversations.upsert(
                1, c["id"], at, inbox_id=i + 1, inbox_name=c["inbox"], channel=c["channel"],
                channel_type=f"Channel::{c['channel']}", contact_id=500 + i, contact_name=c["contact"],
                status="open", crew=c["crew"], last_message_at=at,
                last_message_preview=[HOSTILE, RTL, LONG, "olá"][i], last_message_role="customer",
            )
        for n in range(30):
            # The first two are acknowledged but still not applied (the sidecar is stuck).
            tx.journal.insert(delivery_id=f"d{n}", dedup_key=f"k{n}", event="message_created",
                              outcome="pending" if n < 2 else "accepted", received_at=T0 + 20 * n, account_id=1,
                              conversation_id=101, message_id=n, body="{}")
        # Conversation 101: a full turn (customer, routing, crew attempt, reply in Chatwoot).
        _insert_message(tx, 101, 1, "customer", HOSTILE, T0 + 1)
        _insert_message(tx, 101, 2, "customer", RTL, T0 + 2)
        _insert_message(tx, 101, 3, "customer", LONG, T0 + 3)
        tx.jobs.enqueue(1, 101, 1, T0 + 1, 0.0, 0.0)
        [job] = tx.jobs.claim("w1", T0 + 4, 60.0, 1)
        _route(tx, job, Route("vendas", "http", "rules", "keyword [preço] matched", 0.9), T0 + 4)
        tx.decisions.record_attempt(job_id=job.id, request_id=job.request_id, crew="vendas", backend="http",
                          attempt=1, started_at=T0 + 5, duration=1.25, outcome="answered",
                          status_code=200, error="")
        tx.jobs.store_actions(job.id, "w1", [{"type": "reply", "content": "Olá!"}], T0 + 6)
        tx.effects.begin(job.id, 0, "reply", 1, 101, "hr", T0 + 6)
        tx.effects.finish(job.id, 0, chatwoot_message_id=9001, detail="", now=T0 + 7)
        _insert_message(tx, 101, 4, "bot", "Olá! Como posso ajudar?", T0 + 7)
        _insert_message(tx, 101, 5, "note", "private [note] for agents", T0 + 8)
        _insert_message(tx, 101, 6, "agent", "Oi, aqui é a Carla.", T0 + 9)
        tx.jobs.finish(job.id, "w1", "done", "answered", "", T0 + 7)
        # Conversation 102: the crew kept failing, the job is a dead letter.
        _insert_message(tx, 102, 7, "customer", "Preciso de ajuda com [meu pedido]", T0 + 61)
        tx.jobs.enqueue(1, 102, 7, T0 + 61, 0.0, 0.0)
        [dead] = tx.jobs.claim("w1", T0 + 62, 60.0, 1)
        _route(tx, dead, Route("suporte", "mcp", "engine", "engine chose suporte", 0.75), T0 + 62)
        tx.decisions.record_attempt(job_id=dead.id, request_id=dead.request_id, crew="suporte", backend="mcp",
                          attempt=1, started_at=T0 + 63, duration=30.0, outcome="failed",
                          status_code=503, error="HTTP 503 from crew")
        tx.jobs.mark_failed(dead.id, "w1", "crew suporte failed 6 times: HTTP 503", T0 + 64)
        tx.jobs.finish(dead.id, "w1", "dead", "failed", "crew suporte failed 6 times: HTTP 503", T0 + 64)
        # Conversation 103: waiting in the queue.
        _insert_message(tx, 103, 8, "customer", "horário?", T0 + 121)
        tx.jobs.enqueue(1, 103, 8, T0 + 121, 0.0, 0.0)
        # Documents carry the story's clock, so the ages on screen are stable.
        tx.documents.put(HEALTH_SNAPSHOT, HEALTH, NOW - 5)
        tx.documents.put(CONFIG_STATUS, {"valid": False, "error": "routing.rules[2].pattern: bad regex",
                                         "path": "config.yaml", "loaded_at": NOW - 100}, NOW - 5)
        tx.documents.put(CONFIG_EFFECTIVE, EFFECTIVE, NOW - 5)
        tx.documents.put(RETENTION_STATUS, {"at": NOW - 120, "seconds": 0.4, "pruned": {"deliveries": 40, "jobs": 2},
                                            "batches": 3, "pages_given_back": 12, "kept_forever": []}, NOW - 120)
        tx.metrics.add([
            ("connector_webhooks_received_total", json.dumps({"event": "message_created", "outcome": "accepted"}),
             "counter", "", 30),
            ("connector_webhooks_received_total", json.dumps({"event": "unknown", "outcome": "rejected_signature"}),
             "counter", "", 2),
        ], NOW - 5)
        tx.audit.config_change("api:admin", ["routing.default_crew"],
                               {"routing.default_crew": {"old": "faq", "new": "vendas"}}, NOW - 50)


def _route(tx: Tx, job: Job, route: Route, now: float) -> None:
    tx.jobs.store_route(job.id, "w1", route, None, now)
    tx.decisions.record(job_id=job.id, account_id=job.account_id, conversation_id=job.conversation_id,
                        crew=route.crew, source=route.source, reason=route.reason, confidence=route.confidence,
                        now=now)
    tx.conversations.set_crew(job.account_id, job.conversation_id, route.crew)
