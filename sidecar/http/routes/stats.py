"""Provides GET /stats: outcome analytics as JSON behind the admin token.

``?window=24h`` (default) or ``7d``; the figures come from :func:`state.analytics.summarize`, the
same function the console's analytics screen reads, so the two always agree.
"""

from __future__ import annotations

import time

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from sidecar.http.auth import require_admin
from sidecar.http.errors import BadRequest, Unavailable
from sidecar.runtime import Runtime
from state import StateError
from state.analytics import WINDOWS, summarize

bp = Blueprint("stats")


@bp.get("/stats")
async def stats(request: Request) -> HTTPResponse:
    runtime: Runtime = request.app.ctx.runtime
    require_admin(request, runtime.config.current.server.admin_token)
    window = request.args.get("window", "24h")
    if window not in WINDOWS:
        raise BadRequest(f"window: one of {', '.join(WINDOWS)}", key="window")
    now = time.time()
    since = now - WINDOWS[window]
    try:
        figures = await runtime.state.read(lambda tx: summarize(tx, since))
    except StateError:
        raise Unavailable("storage unavailable") from None
    return json({"window": window, "since": round(since, 3), "generated_at": round(now, 3), **figures})
