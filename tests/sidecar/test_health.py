"""GET /health: checks, cached peer probes, ok/degraded/down, kv snapshot (the fakes over real HTTP)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from sidecar.ops.health import JOURNAL_STALE_SECONDS, QUEUE_STALE_SECONDS, queue_status
from simulators import FakeChatwoot, FakeCrew
from tests.conftest import SidecarFactory
from tests.harness import InProcessSidecar, free_port
from tests.secrets_check import assert_no_secrets
from tests.waiting import wait_until

PEER_KEYS = {"status", "detail", "latency_ms", "checked_at"}


async def _health(sidecar: InProcessSidecar) -> dict[str, Any]:
    status, body, _ = await sidecar.client.get("/health")
    assert status in (200, 503)
    assert (status == 503) == (body["status"] == "down")
    return body


async def _probed(sidecar: InProcessSidecar, **want: str) -> dict[str, Any]:
    """/health once every named check has the wanted status (probes run in the background)."""
    return await wait_until(lambda: _health(sidecar),
                            until=lambda b: all(b["checks"][k]["status"] == v for k, v in want.items()),
                            what=f"/health checks {want}")


async def test_health_reports_every_check_with_age_and_latency(sidecar: InProcessSidecar) -> None:
    body = await _probed(sidecar, chatwoot="ok", mcp_crew="ok")
    assert body["status"] == "ok"
    assert body["version"]
    checks = body["checks"]
    assert checks["database"]["status"] == "ok" and checks["database"]["latency_ms"] >= 0
    for peer in ("chatwoot", "mcp_crew"):
        assert PEER_KEYS <= set(checks[peer])
        assert checks[peer]["latency_ms"] is not None and checks[peer]["age_seconds"] >= 0
    assert checks["decision_engine"]["status"] == "disabled"
    assert checks["queue"] == {"status": "ok", "depth": 0, "oldest_pending_age": None, "dead_letters": 0,
                               "unapplied": 0, "oldest_unapplied_age": None}
    default = checks["backends"]["default"]
    assert default["kind"] == "http" and default["status"] == "ok"
    assert default["breaker"]["state"] == "closed"
    assert isinstance(body["warnings"], list)


async def test_snapshot_is_written_to_kv_in_the_console_shape(sidecar: InProcessSidecar) -> None:
    await _probed(sidecar, chatwoot="ok", mcp_crew="ok")

    doc = await wait_until(lambda: sidecar.query(lambda s: s.documents.get("health.snapshot")),
                           until=lambda d: d is not None and d["checks"]["chatwoot"]["status"] == "ok",
                           what="kv health.snapshot")
    assert set(doc) == {"status", "at", "warnings", "checks"}
    assert set(doc["checks"]) == {"database", "chatwoot", "mcp_crew", "decision_engine", "queue", "backends",
                                  "storage"}
    assert {"file_bytes", "wal_bytes", "reusable_bytes", "auto_vacuum", "oldest_row_at", "oldest_row_kind",
            "oldest_by_kind", "last_pass_at"} <= set(doc["checks"]["storage"])
    for peer in ("chatwoot", "mcp_crew", "decision_engine"):
        assert set(doc["checks"][peer]) == PEER_KEYS
    assert set(doc["checks"]["queue"]) == {"status", "depth", "oldest_pending_age", "dead_letters", "unapplied",
                                           "oldest_unapplied_age"}
    for backend in doc["checks"]["backends"].values():
        assert set(backend) == {"status", "kind", "detail", "latency_ms", "checked_at", "breaker", "in_flight",
                                "waiting", "limit"}
    status = sidecar.query(lambda s: s.documents.get("config.status"))
    assert status["valid"] is True and status["error"] is None and status["path"].endswith("config.yaml")
    effective = sidecar.query(lambda s: s.documents.get("config.effective"))
    assert effective["chatwoot"]["api_access_token"].startswith("****")


async def test_health_never_calls_peers_per_request(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    proc = await sidecar_factory({"health": {"probe_interval_seconds": 3600}})
    await _probed(proc, chatwoot="ok", mcp_crew="ok")
    seen_chatwoot, seen_crew = len(chatwoot.requests), len(crew.requests)
    for _ in range(20):
        await _health(proc)
    assert (len(chatwoot.requests), len(crew.requests)) == (seen_chatwoot, seen_crew)


async def test_a_revoked_chatwoot_token_fails_the_check_without_showing_the_token(
    sidecar: InProcessSidecar, chatwoot: FakeChatwoot
) -> None:
    """The probe is an authenticated call: a live agent-bot token is ok, the same token once
    Chatwoot refuses it (401 "Invalid Access Token") is a failing check that names the key."""
    body = await _probed(sidecar, chatwoot="ok")
    assert body["checks"]["chatwoot"]["detail"] == "token accepted (agent-bot token)"
    token = chatwoot.token
    chatwoot.token = "rotated-in-chatwoot-0123456789"  # an admin reset the bot's access token
    body = await _probed(sidecar, chatwoot="down")
    assert body["status"] == "degraded"
    assert body["checks"]["chatwoot"]["detail"] == "token refused (HTTP 401): check chatwoot.api_access_token"
    probes = [r for r in chatwoot.requests if r.path == "/api/v1/profile"]
    assert probes and all(r.headers.get("api_access_token") == token for r in probes)
    assert assert_no_secrets(sidecar, sidecar.client.bodies) > 2


async def test_a_user_token_is_checked_on_its_profile(sidecar_factory: SidecarFactory, tmp_path: Path) -> None:
    async with FakeChatwoot(token_kind="user", token="user-token-0123456789") as user_chatwoot:
        (tmp_path / "wrong").mkdir()
        (tmp_path / "right").mkdir()
        wrong = await sidecar_factory({"chatwoot": {"api_url": user_chatwoot.url,
                                                    "api_access_token": "not-the-user-token-0123"}},
                                      workdir=tmp_path / "wrong")
        right = await sidecar_factory({"chatwoot": {"api_url": user_chatwoot.url,
                                                    "api_access_token": user_chatwoot.token}},
                                      workdir=tmp_path / "right")
        refused = await _probed(wrong, chatwoot="down")
        accepted = await _probed(right, chatwoot="ok")
    assert refused["checks"]["chatwoot"]["detail"].startswith("token refused (HTTP 401)")
    assert accepted["checks"]["chatwoot"]["detail"] == "token accepted (user token)"
    assert accepted["status"] == "ok"


async def test_a_peer_down_is_degraded_and_intake_still_accepts(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/crew"
    proc = await sidecar_factory({"mcp_crew": {"api_url": dead}})
    body = await _probed(proc, chatwoot="ok", mcp_crew="down")
    assert body["status"] == "degraded"
    assert "unreachable" in body["checks"]["mcp_crew"]["detail"]
    assert body["checks"]["backends"]["default"]["status"] == "down"
    status, answer = await chatwoot.customer_says(chatwoot.open_conversation("whatsapp"), "oi")
    assert (status, answer["status"]) == (200, "accepted")


async def test_decision_engine_and_named_backends_are_probed(
    sidecar_factory: SidecarFactory, crew: FakeCrew
) -> None:
    proc = await sidecar_factory({
        "mcp_crew": {"decision_engine_url": crew.decide_url},
        "crews": {"vendas": {"backend": "http", "url": crew.crew_url, "token": "vendas-token-0123456789"}},
    })
    body = await _probed(proc, chatwoot="ok", mcp_crew="ok", decision_engine="ok")
    assert body["status"] == "ok"
    vendas = body["checks"]["backends"]["vendas"]
    assert vendas["kind"] == "http" and vendas["status"] == "ok"
    assert set(vendas["breaker"]) >= {"state", "recent_requests", "recent_failures"}


async def test_allow_unsigned_is_a_warning(sidecar_factory: SidecarFactory) -> None:
    proc = await sidecar_factory({"chatwoot": {"allow_unsigned": True}})
    body = await _probed(proc, chatwoot="ok")
    assert any("allow_unsigned" in w for w in body["warnings"])
    assert body["status"] == "ok"


@pytest.mark.sqlite_only  # SQLite itself; tests/postgres has the PostgreSQL side
async def test_storage_unavailable_is_down_with_503(sidecar: InProcessSidecar) -> None:
    await _probed(sidecar, chatwoot="ok")
    # Another connection holds the write lock: the sidecar's real write waits out its busy
    # timeout and fails, so nothing could be accepted right now.
    blocker = sqlite3.connect(str(sidecar.db_path), timeout=10, isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        status, body, _ = await sidecar.client.get("/health")
        assert status == 503 and body["status"] == "down"
        assert body["checks"]["database"]["status"] == "down"
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    status, body, _ = await sidecar.client.get("/health")
    assert status == 200 and body["checks"]["database"]["status"] == "ok"


def test_queue_is_degraded_when_a_job_or_an_unapplied_delivery_is_too_old() -> None:
    assert queue_status(None, None) == "ok"
    assert queue_status(QUEUE_STALE_SECONDS - 1, JOURNAL_STALE_SECONDS - 1) == "ok"
    assert queue_status(QUEUE_STALE_SECONDS + 1, None) == "degraded"
    assert queue_status(None, JOURNAL_STALE_SECONDS + 1) == "degraded"
