"""Provides GET /health (database reachable; the full operator checks extend it)."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from sidecar import __version__
from state import StateError

bp = Blueprint("health")


@bp.get("/health")
async def health(request: Request) -> HTTPResponse:
    svc = request.app.ctx.services
    try:
        latency = await svc.writer.call(svc.writer.store.probe_write)
        database = {"status": "ok", "latency_ms": round(latency * 1000, 2)}
    except StateError as exc:
        database = {"status": "down", "error": str(exc)}
    status = "ok" if database["status"] == "ok" else "down"
    return json({"status": status, "checks": {"database": database}, "version": __version__},
                status=200 if status != "down" else 503)
