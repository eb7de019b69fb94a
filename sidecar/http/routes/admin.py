"""Provides GET /config and POST /config behind ``Authorization: Bearer <server.admin_token>``.

No token configured: 403 (the endpoints are off). Missing or wrong token: 401, compared in
constant time; a client that keeps failing gets 429 for a minute (sidecar.http.auth). The logic
of a change lives in :mod:`sidecar.config.live`.
"""

from __future__ import annotations

import os

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from sidecar.config import ENV_OVERRIDES, masked_config_dict
from sidecar.http.auth import client_of, require_admin
from sidecar.http.errors import BadRequest
from sidecar.ops.logs import get_logger
from sidecar.runtime import Runtime

bp = Blueprint("admin")
log = get_logger()

def _admin(request: Request) -> Runtime:
    runtime: Runtime = request.app.ctx.runtime
    require_admin(request, runtime.config.current.server.admin_token)
    return runtime


@bp.get("/config")
async def get_config(request: Request) -> HTTPResponse:
    runtime = _admin(request)
    manager = runtime.config_manager
    return json({
        "config": masked_config_dict(runtime.config.current),
        "meta": {"path": str(manager.path), "valid": manager.error is None,
                 "error": str(manager.error) if manager.error else None, "loaded_at": manager.loaded_at,
                 "restart_required": manager.restart_pending,
                 # These keys come from the environment and win over anything posted or edited.
                 "env_overrides": [f"{section}.{key}" for name, section, key, _ in ENV_OVERRIDES
                                   if (os.environ.get(name) or "").strip()]},
    })


@bp.post("/config")
async def post_config(request: Request) -> HTTPResponse:
    runtime = _admin(request)
    try:
        document = request.json
    except Exception:  # noqa: BLE001 - Sanic raises its own error type for bad JSON
        raise BadRequest("config: the body is not valid JSON", key="config") from None
    result = await runtime.config_manager.post(document, actor=f"api:{client_of(request)}")
    return json(result.body, status=result.status)
