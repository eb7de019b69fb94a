"""Provides POST /webhook/chatwoot and POST /webhook/mcp-crew."""

from __future__ import annotations

import asyncio

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json, raw

from sidecar.crew.base import CrewError, parse_actions
from sidecar.http.auth import require_crew_key
from sidecar.http.errors import BadRequest, NotFound, RequestTimeout, Unavailable
from sidecar.ops.logs import get_logger, log_event
from sidecar.runtime import Runtime
from state import StorageUnavailable

bp = Blueprint("webhooks", url_prefix="/webhook")
log = get_logger()
_JSON = "application/json"


@bp.post("/chatwoot", stream=True)
async def chatwoot_webhook(request: Request) -> HTTPResponse:
    runtime: Runtime = request.app.ctx.runtime
    server = runtime.config.current.server
    try:
        body = await _receive_body(request, server.max_body_bytes, server.request_timeout_seconds)
    except TimeoutError:
        log_event(log, "webhook.body_timeout", level=30, seconds=server.request_timeout_seconds)
        raise RequestTimeout("request body not received in time") from None
    reply = await runtime.intake.handle(body, request.headers)
    return raw(reply.body, status=reply.status, content_type=_JSON)


async def _receive_body(request: Request, max_bytes: int, timeout: float) -> bytes:
    """Reads the whole body within ``timeout`` seconds in total.

    Sanic's REQUEST_TIMEOUT restarts on every received byte, so a client trickling its body
    (slowloris) would hold the connection for as long as it likes; here the deadline is absolute.
    On timeout the connection is closed after the 408 (the rest of the body is never read).
    Streaming routes lift Sanic's size limit, so ours is set again (413).
    """
    stream = request.stream
    if stream is not None:
        stream.request_max_size = max_bytes
    try:
        # asyncio.timeout, not wait_for: no extra task per request.
        async with asyncio.timeout(timeout):
            await request.receive_body()
    except TimeoutError:
        if stream is not None:
            stream.keep_alive = False
            stream.request_body = None  # do not drain the rest: close right after answering
        raise
    return request.body


@bp.post("/mcp-crew")
async def mcp_crew_callback(request: Request) -> HTTPResponse:
    runtime: Runtime = request.app.ctx.runtime
    require_crew_key(request, runtime.config.current.mcp_crew.api_key)
    try:
        doc = request.json
    except Exception:  # noqa: BLE001 - Sanic raises its own error type for bad JSON
        doc = None
    request_id = doc.get("request_id") if isinstance(doc, dict) else None
    if not isinstance(request_id, str) or not request_id:
        raise BadRequest("body must be an object with a request_id")
    try:
        actions = parse_actions(doc)
    except CrewError as exc:
        raise BadRequest(str(exc)) from None
    try:
        outcome = await runtime.store_crew_answer(request_id, actions)
    except StorageUnavailable:
        raise Unavailable("storage unavailable") from None
    log_event(log, "crew.callback", request_id=request_id, outcome=outcome, actions=len(actions))
    if outcome == "unknown":
        raise NotFound("unknown request_id")
    runtime.work_queued()
    return json({"status": outcome})
