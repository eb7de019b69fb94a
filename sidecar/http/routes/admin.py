"""Provides GET /config and POST /config behind ``Authorization: Bearer <server.admin_token>``.

No token configured: 403 (the endpoints are off). Missing or wrong token: 401, compared in
constant time; a client that keeps failing gets 429 for a minute. The logic of a change
lives in :mod:`sidecar.config.live`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections import deque

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from sidecar.config import ENV_OVERRIDES, masked_config_dict
from sidecar.ops.logs import get_logger, log_event

bp = Blueprint("admin")
log = get_logger()

_FAILURE_WINDOW_SECONDS = 60.0
_MAX_FAILURES = 20


class _FailureLimiter:
    """Counts failed logins per client address in a sliding window (brute-force brake)."""

    def __init__(self) -> None:
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str, now: float) -> deque[float]:
        seen = self._failures.setdefault(client, deque())
        while seen and seen[0] < now - _FAILURE_WINDOW_SECONDS:
            seen.popleft()
        return seen

    def blocked(self, client: str) -> bool:
        return len(self._recent(client, time.monotonic())) >= _MAX_FAILURES

    def failed(self, client: str) -> None:
        if len(self._failures) > 10_000:
            self._failures.clear()  # memory bound under a spray of addresses
        self._recent(client, time.monotonic()).append(time.monotonic())


_LIMITER = _FailureLimiter()


def _digest(value: str) -> bytes:
    # Equal-length digests: the comparison time says nothing about the token, not even its length.
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def _deny(request: Request) -> HTTPResponse | None:
    """None when the request carries the admin token; else the error answer."""
    token = request.app.ctx.config.current.server.admin_token
    if not token:
        return json({"status": "forbidden", "error": "no admin token configured (server.admin_token)"},
                    status=403)
    client = request.remote_addr or request.ip or "?"
    if _LIMITER.blocked(client):
        return json({"status": "rejected", "error": "too many failed attempts, try again later"}, status=429,
                    headers={"Retry-After": str(int(_FAILURE_WINDOW_SECONDS))})
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(_digest(given.strip()), _digest(token)):
        return None
    _LIMITER.failed(client)
    log_event(log, "admin.unauthorized", level=30, path=request.path, client=client)
    return json({"status": "unauthorized", "error": "missing or wrong bearer token"}, status=401,
                headers={"WWW-Authenticate": 'Bearer realm="config"'})


@bp.get("/config")
async def get_config(request: Request) -> HTTPResponse:
    if (denied := _deny(request)) is not None:
        return denied
    manager = request.app.ctx.config_manager
    return json({
        "config": masked_config_dict(request.app.ctx.config.current),
        "meta": {"path": str(manager.path), "valid": manager.error is None,
                 "error": str(manager.error) if manager.error else None, "loaded_at": manager.loaded_at,
                 "restart_required": manager.restart_pending,
                 # These keys come from the environment and win over anything posted or edited.
                 "env_overrides": [f"{section}.{key}" for name, section, key, _ in ENV_OVERRIDES
                                   if (os.environ.get(name) or "").strip()]},
    })


@bp.post("/config")
async def post_config(request: Request) -> HTTPResponse:
    if (denied := _deny(request)) is not None:
        return denied
    try:
        document = request.json
    except Exception:  # noqa: BLE001 - Sanic raises its own error type for bad JSON
        return json({"status": "rejected", "key": "config", "error": "config: the body is not valid JSON"},
                    status=400)
    client = request.remote_addr or request.ip or "?"
    result = await request.app.ctx.config_manager.post(document, actor=f"api:{client}")
    return json(result.body, status=result.status)
