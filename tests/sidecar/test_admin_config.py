"""GET/POST /config: auth, masking, live apply, write-back, audit, URL rules."""

from __future__ import annotations

from typing import Any

import yaml
from aiohttp import web

from simulators import FakeChatwoot, FakeCrew
from simulators.loopback import serve, shut_down
from tests.conftest import SidecarFactory
from tests.harness import ADMIN_TOKEN, SECRET, InProcessSidecar
from tests.secrets_check import assert_no_secrets
from tests.waiting import wait_until

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
COMMENT = "# Hand-written by the operator: keep the VIP rule first!"


async def _post(sidecar: InProcessSidecar, doc: Any) -> tuple[int, Any]:
    status, body, _ = await sidecar.client.post("/config", json=doc, headers=AUTH)
    return status, body


async def test_no_admin_token_means_403(sidecar_factory: SidecarFactory) -> None:
    proc = await sidecar_factory({"server": {"admin_token": ""}})
    for method in ("GET", "POST"):
        status, body, _ = await proc.client.request(method, "/config", json={}, headers=AUTH)
        assert status == 403, method
        assert "admin_token" in body["error"]


async def test_missing_or_wrong_token_is_401(sidecar: InProcessSidecar) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": ADMIN_TOKEN},
                    {"Authorization": f"Basic {ADMIN_TOKEN}"}, {"Authorization": f"Bearer {ADMIN_TOKEN}x"}):
        status, body, _ = await sidecar.client.get("/config", headers=headers)
        assert status == 401, headers
        assert body["error"] == "missing or wrong bearer token"
    status, _, _ = await sidecar.client.post("/config", json={"routing": {"default_crew": "x"}})
    assert status == 401
    assert sidecar.query(lambda s: s.audit.config_changes()) == []


async def test_get_masks_every_secret(sidecar: InProcessSidecar, chatwoot: FakeChatwoot, crew: FakeCrew) -> None:
    status, body, raw = await sidecar.client.get("/config", headers=AUTH)
    assert status == 200
    config = body["config"]
    assert config["chatwoot"]["api_access_token"] == "****" + chatwoot.token[-4:]
    assert config["chatwoot"]["webhook_secret"] == "****" + SECRET[-4:]
    assert config["mcp_crew"]["api_key"] == "****" + crew.api_key[-4:]
    assert config["server"]["admin_token"] == "****" + ADMIN_TOKEN[-4:]
    assert config["mcp_crew"]["api_url"] == crew.crew_url
    assert body["meta"]["valid"] is True
    for secret in (chatwoot.token, SECRET, crew.api_key, ADMIN_TOKEN):
        assert secret not in raw
    assert_no_secrets(sidecar, sidecar.client.bodies)


async def test_post_routing_rule_applies_live_keeps_comments_and_is_audited(
    sidecar: InProcessSidecar, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    text = sidecar.config_path.read_text(encoding="utf-8")
    sidecar.config_path.write_text(f"{COMMENT}\n{text}".replace("routing:\n", "routing:\n  # rules: first match wins\n"),
                                   encoding="utf-8")
    rules = [{"channel": "whatsapp", "crew": "vip_crew"}, {"channel": "facebook", "crew": "facebook_crew"}]
    canonical = [{"crew": "vip_crew", "channel": ["whatsapp"]}, {"crew": "facebook_crew", "channel": ["facebook"]}]
    status, body = await _post(sidecar, {"routing": {"rules": rules}})
    assert status == 200, body
    assert body["status"] == "applied"
    assert body["changed"] == ["routing.rules"]
    assert body["restart_required"] == [] and body["overridden_by_env"] == []
    assert body["persisted"] is True and "warning" not in body

    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "quero falar com alguém")
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)
    assert crew.crew_requests()[-1]["crew"] == "vip_crew"

    written = sidecar.config_path.read_text(encoding="utf-8")
    assert COMMENT in written and "# rules: first match wins" in written
    on_disk = yaml.safe_load(written)
    assert on_disk["routing"]["rules"] == rules
    # Everything else in the file is untouched, secrets included.
    assert on_disk["chatwoot"]["webhook_secret"] == SECRET
    assert on_disk["mcp_crew"]["api_key"] == crew.api_key

    status, got, _ = await sidecar.client.get("/config", headers=AUTH)
    assert got["config"]["routing"]["rules"] == canonical
    assert_no_secrets(sidecar, sidecar.client.bodies)

    [entry] = sidecar.query(lambda s: s.audit.config_changes())
    assert entry.actor.startswith("api") and entry.keys == ("routing.rules",)
    assert entry.changes["routing.rules"]["new"] == canonical
    effective = sidecar.query(lambda s: s.documents.get("config.effective"))
    assert effective["routing"]["rules"] == canonical


async def test_invalid_post_is_400_naming_the_key_and_changes_nothing(sidecar: InProcessSidecar) -> None:
    before = sidecar.config_path.read_text(encoding="utf-8")
    cases = [
        ({"processing": {"max_attempts": 0}}, "processing.max_attempts"),
        ({"routing": {"rules": [{"crew": "x"}]}}, "routing.rules[0]"),
        ({"processing": {"nonsense": 1}}, "processing.nonsense"),
        ({"mcp_crew": {"api_url": "http://169.254.169.254/latest/meta-data"}}, "mcp_crew.api_url"),
        ({"chatwoot": {"api_url": "http://[fd00:ec2::254]/"}}, "chatwoot.api_url"),
        ({"mcp_crew": {"decision_engine_url": "http://user:pw@crew.local/decide"}}, "mcp_crew.decision_engine_url"),
        ({"mcp_crew": {"api_url": "ftp://crew.local/x"}}, "mcp_crew.api_url"),
        ({"crews": {"vendas": {"backend": "http", "url": "http://0xa9fea9fe/"}}}, "crews.vendas.url"),
        ({"chatwoot": {"api_access_token": "****nope"}}, "chatwoot.api_access_token"),
    ]
    for doc, key in cases:
        status, body = await _post(sidecar, doc)
        assert status == 400, (doc, body)
        assert body["key"] == key and body["error"].startswith(key), body
    status, body, _ = await sidecar.client.post("/config", data=b"{nope", headers=AUTH)
    assert status == 400
    status, body = await _post(sidecar, ["not", "an", "object"])
    assert status == 400
    assert sidecar.config_path.read_text(encoding="utf-8") == before
    assert sidecar.query(lambda s: s.audit.config_changes()) == []


async def test_echoing_get_output_keeps_the_real_secrets(
    sidecar: InProcessSidecar, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    _, got, _ = await sidecar.client.get("/config", headers=AUTH)
    got["config"]["context"]["max_messages"] = 7
    status, body = await _post(sidecar, got)  # the whole GET answer, masks included
    assert status == 200, body
    assert body["changed"] == ["context.max_messages"]
    on_disk = yaml.safe_load(sidecar.config_path.read_text(encoding="utf-8"))
    assert on_disk["chatwoot"]["webhook_secret"] == SECRET
    assert on_disk["chatwoot"]["api_access_token"] == chatwoot.token
    assert on_disk["mcp_crew"]["api_key"] == crew.api_key
    assert on_disk["context"]["max_messages"] == 7
    # Signed webhooks still verify and crews still accept our key: nothing was overwritten.
    conv = chatwoot.open_conversation("webwidget")
    assert (await chatwoot.customer_says(conv, "olá"))[0] == 200
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)


async def test_a_float_written_with_an_exponent_is_accepted_and_reads_back(sidecar: InProcessSidecar) -> None:
    """JSON's 0.00001 is 1e-05 in Python; written as such, YAML 1.1 would read a string back."""
    status, body = await _post(sidecar, {"processing": {"debounce_seconds": 0.00001, "retry_base_seconds": 2.5e-2}})
    assert status == 200, body
    assert body["persisted"] is True
    assert body["config"]["processing"]["debounce_seconds"] == 0.00001
    on_disk = yaml.safe_load(sidecar.config_path.read_text(encoding="utf-8"))
    assert on_disk["processing"]["debounce_seconds"] == 0.00001
    assert on_disk["processing"]["retry_base_seconds"] == 0.025
    assert not any("config.post_failed" in line for line in sidecar.output)
    [entry] = sidecar.query(lambda s: s.audit.config_changes())  # the watcher took the write as ours
    assert entry.actor.startswith("api") and entry.keys == ("processing.debounce_seconds",
                                                            "processing.retry_base_seconds")


async def test_a_read_only_config_is_applied_live_and_says_it_is_not_persisted(
    sidecar: InProcessSidecar, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    """The compose file mounts config.yaml read-only: the change still applies, the answer,
    the log and /health say it is not kept, and a second post builds on the first."""
    before = sidecar.config_path.read_text(encoding="utf-8")
    sidecar.config_path.chmod(0o444)
    rules = [{"channel": "whatsapp", "crew": "live_only_crew"}]
    status, body = await _post(sidecar, {"routing": {"rules": rules}})
    assert status == 200, body
    assert body["status"] == "applied" and body["persisted"] is False
    assert body["warning"] == "config.yaml is read-only: the change is live until the next restart"
    status, body = await _post(sidecar, {"context": {"max_messages": 3}})
    assert status == 200 and body["persisted"] is False
    assert body["config"]["context"]["max_messages"] == 3
    assert body["config"]["routing"]["rules"] == [{"crew": "live_only_crew", "channel": ["whatsapp"]}]
    _, health, _ = await sidecar.client.get("/health")
    assert any("not saved (config.yaml is read-only)" in w for w in health["warnings"])
    assert health["status"] == "ok"  # running what was asked for; only the file lags
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "oi")
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)
    assert crew.crew_requests()[-1]["crew"] == "live_only_crew"
    assert sidecar.config_path.read_text(encoding="utf-8") == before
    line = await sidecar.wait_for_output("config.not_persisted")
    assert "read-only" in line
    assert sorted(entry.keys for entry in sidecar.query(lambda s: s.audit.config_changes())) == [
        ("context.max_messages",), ("routing.rules",)]


async def test_unserved_crews_are_warned_about(sidecar_factory: SidecarFactory) -> None:
    """Without mcp_crew.api_url, a crew not listed under crews: has no back-end: accepted (the
    shipped file is like that), but /health and the POST answer say which key names it."""
    proc = await sidecar_factory({"mcp_crew": {"api_url": ""}, "routing": {"rules": []},
                                  "crews": {"suporte": {"backend": "local", "fallback_reply": "oi"}}})
    _, health, _ = await proc.client.get("/health")
    assert not any("no back-end serves" in w for w in health["warnings"])
    status, body = await _post(proc, {"routing": {"rules": [
        {"channel": "sms", "crew": "suporte"}, {"channel": "whatsapp", "crew": "ghost"}]}})
    assert status == 200, body
    expected = 'routing.rules[1].crew: no back-end serves crew "ghost": list it under crews: or set mcp_crew.api_url'
    assert expected in body["warnings"]
    _, health, _ = await proc.client.get("/health")
    assert expected in health["warnings"]
    await proc.wait_for_output("config.unserved_crews")


async def test_restart_only_keys_are_reported_not_applied(sidecar: InProcessSidecar) -> None:
    status, body = await _post(sidecar, {"server": {"port": sidecar.port + 1}})
    assert status == 200 and body["restart_required"] == ["server.port"]
    status, health, _ = await sidecar.client.get("/health")  # still served on the old port
    assert status == 200
    assert any("server.port" in w and "restart" in w for w in health["warnings"])
    assert yaml.safe_load(sidecar.config_path.read_text())["server"]["port"] == sidecar.port + 1
    await sidecar.wait_for_output("restart_required=server.port")


async def test_env_overrides_still_win_after_a_post(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    proc = await sidecar_factory(env={"MCP_CREW_API_URL": crew.crew_url})
    status, body = await _post(proc, {"mcp_crew": {"api_url": "http://127.0.0.1:9/elsewhere"}})
    assert status == 200
    assert body["overridden_by_env"] == ["mcp_crew.api_url (env MCP_CREW_API_URL)"]
    assert body["config"]["mcp_crew"]["api_url"] == crew.crew_url
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "oi")
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)


async def test_body_limit_changes_live(sidecar: InProcessSidecar, chatwoot: FakeChatwoot) -> None:
    status, _ = await _post(sidecar, {"server": {"max_body_bytes": 2048}})
    assert status == 200
    conv = chatwoot.open_conversation("whatsapp")
    status, _ = await chatwoot.customer_says(conv, "x" * 4096)
    assert status == 413


class _Redirector:
    """Answers every request with 302 to an internal URL, and records what it got."""

    def __init__(self, internal: str) -> None:
        self.internal = internal
        self.hits: list[str] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        async def handle(request: web.Request) -> web.Response:
            self.hits.append(f"{request.method} {request.path}")
            raise web.HTTPFound(f"{self.internal}/steal{request.path}")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        self._runner, self.url = await serve(app)

    async def stop(self) -> None:
        await shut_down((), None, self._runner)


async def test_no_outbound_call_follows_a_redirect(sidecar: InProcessSidecar, chatwoot: FakeChatwoot) -> None:
    internal = _Redirector("http://127.0.0.1:1")
    await internal.start()  # stands for an internal service; it must never be reached
    redirector = _Redirector(internal.url)
    await redirector.start()
    try:
        status, body = await _post(sidecar, {
            "chatwoot": {"api_url": redirector.url},
            "mcp_crew": {"api_url": f"{redirector.url}/crew", "decision_engine_url": f"{redirector.url}/decide"},
        })
        assert status == 200, body
        conv = chatwoot.open_conversation("whatsapp")
        await chatwoot.customer_says(conv, "oi")

        def seen() -> bool:
            return all(any(h.startswith(p) for h in redirector.hits)
                       for p in ("POST /decide", "POST /crew", "GET /crew", "GET /decide", "GET /",
                                 "POST /api/v1/accounts"))

        await wait_until(seen, what=f"calls to the redirector: {redirector.hits}")
        await _drain(sidecar)
    finally:
        await redirector.stop()
        await internal.stop()
    assert internal.hits == []


async def _drain(proc: InProcessSidecar) -> None:
    """Waits until the job is finished one way or another (dead letter after the 302s)."""
    await wait_until(lambda: proc.client.get("/webhook/status"),
                     until=lambda r: r[1]["queue"]["depth"] == 0, what="queue drained")
