"""Every configured secret is searched for in all logs and responses of a representative run."""

from __future__ import annotations

import json

from simulators import FakeChatwoot, FakeCrew
from tests.conftest import SidecarFactory
from tests.harness import ADMIN_TOKEN, SECRET
from tests.secrets_check import assert_no_secrets, configured_secrets
from tests.waiting import wait_until

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
NEW_SECRET = "whsec-rotated-secret-9876543210"
CREW_TOKEN = "vendas-crew-token-0123456789abcdef"
HEADER_SECRET = "x-api-key-value-0123456789"


async def test_no_secret_in_any_log_or_response(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    proc = await sidecar_factory({
        "logging": {"level": "DEBUG"},
        "mcp_crew": {"decision_engine_url": crew.decide_url},
        "crews": {"vendas": {"backend": "http", "url": crew.crew_url, "token": CREW_TOKEN,
                             "headers": {"X-Api-Key": HEADER_SECRET}}},
        "routing": {"rules": [{"keywords": ["pedido"], "crew": "vendas"}, {"channel": "whatsapp", "crew": "w"}]},
    })
    secrets = configured_secrets(proc)
    assert {SECRET, ADMIN_TOKEN, chatwoot.token, crew.api_key, CREW_TOKEN, HEADER_SECRET} <= set(secrets)

    # Webhooks: answered, async callback, retried, dead-lettered, duplicate, forged, malformed.
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "quero saber do meu pedido", delivery_id="leak-1")
    await chatwoot.customer_says(conv, "quero saber do meu pedido", delivery_id="leak-1")
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)
    crew.mode = "async"
    conv2 = chatwoot.open_conversation("facebook")
    await chatwoot.customer_says(conv2, "olá")
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv2.display_id)) == 1)
    crew.mode = "sync"
    crew.fail_next(1, 503, retry_after=0.05)
    conv3 = chatwoot.open_conversation("webwidget")
    await chatwoot.customer_says(conv3, "oi")
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv3.display_id)) == 1)
    crew.fail_always(500)
    conv4 = chatwoot.open_conversation("instagram")
    await chatwoot.customer_says(conv4, "alguém?")
    await chatwoot.wait_for(lambda: len(chatwoot.notes(conv4.display_id)) == 1, timeout=20)
    crew.fail_always(None)
    await chatwoot.send_event({"event": "message_created"}, secret="forged-secret-value")
    await chatwoot.send_event(None, raw_body=b"\xff\xfe not json")
    await proc.client.post("/webhook/mcp-crew", json={"request_id": "x"}, headers={"Authorization": "Bearer wrong"})
    await proc.client.post("/webhook/chatwoot", data=b"x" * (2 * 1024 * 1024), wire=True)  # 413 while reading

    # Operator endpoints and errors.
    for path in ("/health", "/metrics", "/metrics?format=json", "/webhook/status", "/nope"):
        await proc.client.get(path)
    await proc.client.get("/config", headers=AUTH)
    await proc.client.get("/config", headers={"Authorization": "Bearer wrong"})
    await proc.client.post("/config", json={"processing": {"max_attempts": -1}}, headers=AUTH)
    await proc.client.post("/config", json={"mcp_crew": {"api_url": "http://169.254.169.254/"}}, headers=AUTH)
    # A secret rotated through the API: the new one must not leak either.
    status, body, _ = await proc.client.post("/config", headers=AUTH,
                                             json={"chatwoot": {"webhook_secret": [NEW_SECRET, SECRET]}})
    assert status == 200, body
    status, _ = await chatwoot.customer_says(chatwoot.open_conversation("whatsapp"), "ainda funciona?")
    assert status == 200
    await proc.client.get("/config", headers=AUTH)
    await wait_until(lambda: proc.client.get("/health"), until=lambda r: r[0] == 200, what="health")

    await proc.stop()  # flushes everything to the log files (a restart would not add any)
    # What the console reads about config and health is checked too.
    console_view = [json.dumps(proc.query(lambda s, k=key: s.documents.get(k)), default=str)
                    for key in ("config.effective", "config.status", "health.snapshot")]
    console_view.append(json.dumps([e.changes for e in proc.query(lambda s: s.audit.config_changes())], default=str))
    assert "webhook_secret" in console_view[-1]
    searched = assert_no_secrets(proc, [*proc.client.bodies, *console_view], extra_secrets=[NEW_SECRET])
    assert searched >= 20
    # The check itself works: the secret really is in the config file it read.
    assert NEW_SECRET in proc.config_path.read_text(encoding="utf-8")
