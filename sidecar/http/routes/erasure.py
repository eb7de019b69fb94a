"""Provides POST /admin/forget: erase a contact's or a conversation's content (LGPD/GDPR requests).

Behind the admin token like /config (none configured: 403; missing or wrong: 401; a client that
keeps failing: 429). Body ``{"contact_id": N}`` (optionally ``"account_id"``) or
``{"conversation_id": N, "account_id": A}``; ``account_id`` is needed when the conversation number
exists in several accounts. 200 with the row counts blanked (``"status": "forgotten"``, or
``"nothing_stored"``); 400 naming the bad key, and nothing changed; 503 when the state cannot be
written. The same as ``python -m sidecar forget`` (``state.erasure``), recorded in the audit trail
without content; the worker process then merges the filter's index and gives the space back.
"""

from __future__ import annotations

import time
from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from sidecar.http.auth import client_of, require_admin
from sidecar.http.errors import BadRequest, Unavailable
from sidecar.ops.logs import get_logger, log_event
from sidecar.runtime import Runtime
from state import StateError
from state.erasure import BadTarget, Erasure, Target, forget

bp = Blueprint("erasure")
log = get_logger()
_KEYS = ("contact_id", "conversation_id", "account_id")


def _target(request: Request) -> Target:
    try:
        document: Any = request.json
    except Exception:  # noqa: BLE001 - Sanic raises its own error type for bad JSON
        raise BadRequest("body: not valid JSON", key="body") from None
    if not isinstance(document, dict):
        raise BadRequest("body: must be a JSON object", key="body")
    for key in document:
        if key not in _KEYS:
            raise BadRequest(f"{key}: unknown key (give contact_id, or conversation_id and account_id)", key=key)
    try:
        return Target(**{key: document.get(key) for key in _KEYS})
    except BadTarget as exc:
        raise BadRequest(str(exc), key=exc.key) from None


@bp.post("/admin/forget")
async def forget_route(request: Request) -> HTTPResponse:
    runtime: Runtime = request.app.ctx.runtime
    require_admin(request, runtime.config.current.server.admin_token)
    target = _target(request)
    actor = f"api:{client_of(request)}"

    def erase(db: Any) -> Erasure:
        return db.erase(lambda tx: forget(tx, target, actor=actor, now=time.time()), clear_wal=False)[0]

    try:
        erasure: Erasure = await runtime.state.call(erase)
    except BadTarget as exc:
        raise BadRequest(str(exc), key=exc.key) from None
    except StateError:
        raise Unavailable("storage unavailable, nothing was erased") from None
    log_event(log, "state.forgotten", target=erasure.target, actor=actor, **erasure.counts())
    runtime.search_index.wake()  # merge the index's old segments now (in this process, if it runs here)
    return json({"status": "nothing_stored" if erasure.nothing else "forgotten", "target": erasure.target,
                 "counts": erasure.counts()})
