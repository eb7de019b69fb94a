"""Provides GET /metrics: Prometheus text, or JSON (``Accept: application/json``/``?format=json``)."""

from __future__ import annotations

import contextlib

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json, text

from state import StateError

bp = Blueprint("metrics")

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _wants_json(request: Request) -> bool:
    if request.args.get("format") == "json":
        return True
    return "application/json" in request.headers.get("accept", "")


@bp.get("/metrics")
async def metrics(request: Request) -> HTTPResponse:
    svc = request.app.ctx.services
    # Gauges are read now rather than from the last flush, so a scrape right after a start
    # already has them.
    with contextlib.suppress(StateError):
        stats = await svc.writer.call(svc.writer.store.queue_stats)
        svc.metrics.set_gauge("connector_queue_depth", stats.depth)
        svc.metrics.set_gauge("connector_dead_letters", stats.dead)
    if _wants_json(request):
        return json(svc.metrics.to_json())
    return text(svc.metrics.render_prometheus(), content_type=PROMETHEUS_CONTENT_TYPE)
