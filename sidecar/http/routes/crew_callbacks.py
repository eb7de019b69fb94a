"""Provides POST /webhook/crewai/<request_id>/<token>: CrewAI AMP's ``crewWebhookUrl`` callback.

CrewAI does not specify this callback's payload, and AMP cannot sign it with our key, so:

* only URLs the sidecar issued are accepted: ``token`` is an HMAC of the request id under the
  crew's token (else ``mcp_crew.api_key``), see ``sidecar.crew.amp.callback_token``;
* the body is only a wake-up hint: the sidecar reads the run's status from AMP itself
  (``GET /status/{kickoff_id}``) and stores the answer only if that says the run finished.

A failed or still-running run is left to the worker's polling, which applies the usual
retry and failure policy; the callback just makes a finished run show up at once.
"""

from __future__ import annotations

import contextlib
import hmac
import time
from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from sidecar.crew.amp import AmpCrewBackend, callback_token
from sidecar.crew.base import Answered, CrewError
from sidecar.crew.registry import callback_secret
from sidecar.http.errors import NotFound, Unavailable
from sidecar.ops.logs import get_logger, log_event
from sidecar.runtime import Runtime
from state import StorageUnavailable

bp = Blueprint("crew_callbacks", url_prefix="/webhook/crewai")
log = get_logger()


def _hint_kickoff_id(request: Request) -> str | None:
    try:
        doc: Any = request.json
    except Exception:  # noqa: BLE001 - the payload is unspecified; any body is fine
        return None
    if isinstance(doc, dict):
        for key in ("kickoff_id", "execution_id", "id"):
            if isinstance(doc.get(key), str) and doc[key]:
                return doc[key]
    return None


@bp.post("/<request_id:str>/<token:str>")
async def crewai_callback(request: Request, request_id: str, token: str) -> HTTPResponse:
    runtime: Runtime = request.app.ctx.runtime
    config = runtime.config.current
    try:
        job = await runtime.state.read(lambda tx: tx.jobs.by_request_id(request_id))
    except StorageUnavailable:
        raise Unavailable("storage unavailable") from None
    crew = config.crew(job.crew or "") if job is not None else None
    secret = callback_secret(crew, config) if crew is not None else ""
    # Same answer for an unknown request and a wrong token: the URL either was issued by us or not.
    if job is None or crew is None or not secret or not hmac.compare_digest(
            token.encode(), callback_token(secret, request_id).encode()):
        raise NotFound("unknown callback URL")

    runtime.crews.refresh(config)
    backend = runtime.crews.backend_for(crew.name)
    if not isinstance(backend, AmpCrewBackend):
        raise NotFound("crew is not a CrewAI AMP crew")
    kickoff_id = job.external_id or _hint_kickoff_id(request)
    if job.actions is not None or kickoff_id is None:
        # Already answered, or the kickoff answer is not stored yet: polling takes it from here.
        log_event(log, "crew.amp_callback", request_id=request_id, outcome="noted")
        return json({"status": "noted"})
    try:
        result = backend.interpret(kickoff_id, await backend.status(kickoff_id))
    except CrewError as exc:
        # A failed run: let the worker poll now, so the failure policy runs without waiting
        # for the next poll interval.
        log_event(log, "crew.amp_callback", level=30, request_id=request_id, outcome="status_unusable",
                  error=str(exc))
        with contextlib.suppress(StorageUnavailable):
            await runtime.state.write(lambda tx: tx.jobs.poll_now(request_id, time.time()))
            runtime.work_queued()
        return json({"status": "noted"})
    if not isinstance(result, Answered):
        log_event(log, "crew.amp_callback", request_id=request_id, outcome="still_running")
        return json({"status": "running"})
    try:
        outcome = await runtime.store_crew_answer(request_id, result.actions)
    except StorageUnavailable:
        raise Unavailable("storage unavailable") from None
    log_event(log, "crew.amp_callback", request_id=request_id, outcome=outcome, actions=len(result.actions))
    runtime.work_queued()
    return json({"status": outcome})
