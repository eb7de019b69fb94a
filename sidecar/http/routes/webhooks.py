"""Provides POST /webhook/chatwoot and POST /webhook/mcp-crew."""

from __future__ import annotations

import asyncio
import hmac
import time

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from sidecar.crew.base import CrewError, parse_actions
from sidecar.ops.logs import get_logger, log_event
from state import StorageUnavailable

bp = Blueprint("webhooks", url_prefix="/webhook")
log = get_logger()


@bp.post("/chatwoot", stream=True)
async def chatwoot_webhook(request: Request) -> HTTPResponse:
    server = request.app.ctx.config.current.server
    try:
        body = await _receive_body(request, server.max_body_bytes, server.request_timeout_seconds)
    except TimeoutError:
        log_event(log, "webhook.body_timeout", level=30, seconds=server.request_timeout_seconds)
        return json({"status": "rejected", "error": "request body not received in time"}, status=408)
    reply = await request.app.ctx.intake.handle(body, request.headers)
    return json(reply.body, status=reply.status)


async def _receive_body(request: Request, max_bytes: int, timeout: float) -> bytes:
    """Reads the whole body within ``timeout`` seconds in total.

    Sanic's REQUEST_TIMEOUT restarts on every received byte, so a client trickling its body
    (slowloris) would hold the connection for as long as it likes; here the deadline is
    absolute. On timeout the connection is closed after the 408 (the rest of the body is
    never read). Streaming routes lift Sanic's size limit, so ours is set again (413).
    """
    stream = request.stream
    if stream is not None:
        stream.request_max_size = max_bytes
    try:
        await asyncio.wait_for(request.receive_body(), timeout)
    except TimeoutError:
        if stream is not None:
            stream.keep_alive = False
            stream.request_body = None  # do not drain the rest: close right after answering
        raise
    return request.body


def _bearer_ok(request: Request, expected: str) -> bool:
    header = request.headers.get("authorization", "")
    given = header[7:] if header[:7].lower() == "bearer " else ""
    # Compare even when nothing was configured, so timing says nothing about the key.
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


@bp.post("/mcp-crew")
async def mcp_crew_callback(request: Request) -> HTTPResponse:
    svc = request.app.ctx.services
    if not _bearer_ok(request, svc.config.current.mcp_crew.api_key):
        return json({"status": "rejected", "error": "missing or wrong bearer token"}, status=401)
    try:
        doc = request.json
    except Exception:  # noqa: BLE001 - Sanic raises its own error type for bad JSON
        doc = None
    request_id = doc.get("request_id") if isinstance(doc, dict) else None
    if not isinstance(request_id, str) or not request_id:
        return json({"status": "rejected", "error": "body must be an object with a request_id"}, status=400)
    try:
        actions = parse_actions(doc)
    except CrewError as exc:
        return json({"status": "rejected", "error": str(exc)}, status=400)
    try:
        outcome = await svc.writer.transact(lambda tx: tx.complete_async(request_id, actions, time.time()))
    except StorageUnavailable:
        return json({"status": "unavailable", "error": "storage unavailable"}, status=503)
    log_event(log, "crew.callback", request_id=request_id, outcome=outcome, actions=len(actions))
    if outcome == "unknown":
        return json({"status": "unknown", "error": "unknown request_id"}, status=404)
    svc.wake.set()
    return json({"status": outcome})
