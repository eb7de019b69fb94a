"""Provides GET /health: cached peer checks, a live database write/read and the queue.

The status rules are documented in :mod:`sidecar.ops.health`. Only ``down`` answers 503, so a
load balancer keeps sending webhooks while a peer is merely unreachable (they are queued).
"""

from __future__ import annotations

import time

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from sidecar import __version__
from sidecar.ops.health import with_ages

bp = Blueprint("health")


@bp.get("/health")
async def health(request: Request) -> HTTPResponse:
    doc = await request.app.ctx.runtime.health.snapshot()
    body = {**with_ages(doc, time.time()), "version": __version__}
    return json(body, status=503 if doc["status"] == "down" else 200)
