"""Provides the ``crewai_amp`` back-end: a crew deployed on CrewAI AMP (Enterprise).

The wire protocol (reference B1): ``POST {url}/kickoff`` with string-only ``inputs`` and a
``meta`` object answers ``{"kickoff_id"}``; the run then finishes in seconds to minutes and is
read with ``GET {url}/status/{kickoff_id}`` (older docs: ``/{kickoff_id}/status``). A
``crewWebhookUrl`` makes AMP call the sidecar when the crew finishes; its payload is not
specified, so the sidecar treats that call only as a hint and reads the status itself
(``sidecar/routes/crew_callbacks.py``). Polling stays on as the safety net.

The parsers here (``normalise_status``, ``actions_from_output``, ``amp_inputs``) are shared
with the MCP back-end, which speaks the same shapes through CrewAI's enterprise MCP server.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from typing import Any, Literal
from urllib.parse import quote

import aiohttp

from sidecar.config import CrewConfig
from sidecar.crew.base import (
    Accepted,
    Answered,
    CrewError,
    CrewRequest,
    ProbeResult,
    classify_status,
    parse_actions,
    parse_answer,
)
from sidecar.crew.http import chatwootai_actions
from sidecar.queue.retry import parse_retry_after

RunState = Literal["running", "completed", "failed"]

# Both documented vocabularies (status: running/completed/error; state: STARTED/SUCCESS/FAILED)
# plus the spellings seen from real deployments. Compared lower-cased.
_RUNNING = frozenset({"running", "started", "pending", "queued", "in_progress", "processing", "created"})
_COMPLETED = frozenset({"completed", "success", "succeeded", "done", "finished", "complete"})
_FAILED = frozenset({"error", "failed", "failure", "cancelled", "canceled", "aborted", "timeout"})

MAX_POLL_INTERVAL = 30.0
"""Longest pause between two status polls, however long the run has been going."""

_FENCE = re.compile(r"^```[a-zA-Z0-9_-]*\s*\n(.*)\n```\s*$", re.DOTALL)


# --------------------------------------------------------------------------------------------
# Parsers (pure functions, unit-tested)
# --------------------------------------------------------------------------------------------


def normalise_status(doc: Any) -> tuple[RunState, Any, str]:
    """``(state, output, error)`` from an AMP status document, whichever shape it has.

    An unknown state counts as running: the deadline bounds the wait, and a status word we
    have never seen must not fail a run that may still succeed.
    """
    if not isinstance(doc, dict):
        raise CrewError("status answer is not a JSON object", retryable=False, counts_against_backend=False)
    words = [str(doc[key]).strip().lower() for key in ("state", "status") if isinstance(doc.get(key), str)]
    state: RunState = "running"
    for word in words:
        if word in _COMPLETED:
            state = "completed"
            break
        if word in _FAILED:
            state = "failed"
            break
    result = doc.get("result")
    output = result.get("output") if isinstance(result, dict) and "output" in result else result
    if output is None and "output" in doc:
        output = doc["output"]
    error = doc.get("error") or doc.get("message") or ""
    if isinstance(error, dict):
        error = error.get("message") or json.dumps(error, ensure_ascii=False)
    return state, output, str(error)


def actions_from_output(output: Any) -> tuple[dict[str, Any], ...]:
    """A crew's final output as actions.

    Accepted, in this order: a reply document ``{"actions": [...]}`` (also inside a JSON
    string or a ```json fence, as LLM crews often print it), a bare list of actions, the
    seed's ``{"auto_reply", "reply_content"}``, ``{"reply": "..."}``, ``{"output": ...}``;
    any other text is sent to the customer as one reply. A run that finished without any
    output is an error (the failure policy then tells a human), not silence.
    """
    if output is None or (isinstance(output, str) and not output.strip()):
        raise CrewError("crew finished without any output", retryable=False, counts_against_backend=False)
    if isinstance(output, str):
        text = output.strip()
        fenced = _FENCE.match(text)
        candidate = fenced.group(1).strip() if fenced else text
        if candidate[:1] in "{[":
            try:
                doc = json.loads(candidate)
            except ValueError:
                doc = None
            if isinstance(doc, dict | list):
                try:
                    return actions_from_output(doc)
                except CrewError:
                    pass  # JSON, but not a reply: it is the text the crew wants said
        return ({"type": "reply", "content": text},)
    if isinstance(output, list):
        return parse_actions({"actions": output})
    if isinstance(output, dict):
        if isinstance(output.get("actions"), list):
            return parse_actions(output)
        if "auto_reply" in output:
            return chatwootai_actions(output)
        for key in ("reply", "output", "raw", "result"):
            if key in output and output[key] is not None:
                return actions_from_output(output[key])
        raise CrewError("crew output has no actions and no reply", retryable=False, counts_against_backend=False)
    return ({"type": "reply", "content": str(output)},)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def amp_inputs(envelope: dict[str, Any]) -> dict[str, str]:
    """AMP ``inputs``: strings only (its schema says ``additionalProperties: string``).

    Complex values are JSON-encoded. Credentials are never part of the envelope, so none
    can leak into a crew's prompt from here.
    """
    messages = [m for m in envelope.get("messages") or [] if isinstance(m, dict)]
    chatwoot = envelope.get("chatwoot") or {}
    contact = envelope.get("contact") or {}
    context = {
        "crew": envelope.get("crew"),
        "routing": envelope.get("routing"),
        "chatwoot": chatwoot,
        "contact": contact,
        "messages": messages,
    }
    return {
        "message": "\n".join(str(m.get("content") or "") for m in messages).strip(),
        "history_json": _text(envelope.get("history") or []),
        "context_json": _text(context),
        "channel": str(chatwoot.get("channel") or ""),
        "contact_name": str(contact.get("name") or "") if isinstance(contact, dict) else "",
        "conversation_id": str(chatwoot.get("conversation_id") or ""),
        "request_id": str(envelope.get("request_id") or ""),
    }


def kickoff_id_from(doc: Any) -> str | None:
    """The run id in a kickoff answer (AMP: ``kickoff_id``; wrappers use other names)."""
    if isinstance(doc, dict):
        for key in ("kickoff_id", "crew_id", "execution_id", "id", "run_id"):
            value = doc.get(key)
            if isinstance(value, str | int) and str(value).strip():
                return str(value).strip()
        for key in ("result", "data"):
            if isinstance(doc.get(key), dict):
                return kickoff_id_from(doc[key])
    return None


def callback_token(secret: str, request_id: str) -> str:
    """The path token of a sidecar-issued callback URL: only the sidecar can mint it."""
    return hmac.new(secret.encode(), f"crewai-callback:{request_id}".encode(), hashlib.sha256).hexdigest()


def next_poll_interval(base: float, elapsed: float) -> float:
    """Polls start at ``base`` and back off as the run gets older, up to ~30 s.

    Each pause is a quarter of the time the run has taken so far, so the number of polls grows
    with the logarithm of the run time (a 10-minute run costs ~20 polls, not 300).
    """
    return min(max(MAX_POLL_INTERVAL, base), max(base, elapsed / 4))


# --------------------------------------------------------------------------------------------
# The back-end
# --------------------------------------------------------------------------------------------


class AmpCrewBackend:
    """Kicks a CrewAI AMP crew off and follows the run by callback and by polling."""

    kind = "crewai_amp"
    supports_callback = True

    def __init__(self, session: aiohttp.ClientSession, crew: CrewConfig, *, public_url: str,
                 callback_secret: str) -> None:
        self.session = session
        self.name = crew.name
        self.url = crew.url.rstrip("/")
        self.token = crew.token
        self.extra_headers = dict(crew.headers)
        self.poll_interval = crew.poll_interval_seconds
        self.timeout = aiohttp.ClientTimeout(total=crew.timeout_seconds,
                                             sock_connect=min(5.0, crew.timeout_seconds))
        self.public_url = public_url.rstrip("/")
        self.callback_secret = callback_secret
        self.breaker_key = f"crewai_amp:{self.url}"
        # When each run was first seen, for the polling backoff (lost on restart: then the
        # backoff restarts from the base interval, which is only a little chattier).
        self._started: dict[str, float] = {}
        # Which status path this deployment answers; learnt on the first 404 fallback.
        self._legacy_status_path = False

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", **self.extra_headers}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def callback_url(self, request_id: str) -> str:
        """Empty when the sidecar has no public URL or no secret to sign the URL with."""
        if not self.public_url or not self.callback_secret:
            return ""
        token = callback_token(self.callback_secret, request_id)
        return f"{self.public_url}/webhook/crewai/{quote(request_id, safe='')}/{token}"

    async def _request(self, method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, str, float | None]:
        try:
            async with self.session.request(method, url, json=body, headers=self._headers(),
                                            timeout=self.timeout, allow_redirects=False) as resp:
                return resp.status, await resp.text(), parse_retry_after(resp.headers.get("Retry-After"))
        except TimeoutError as exc:
            raise CrewError(f"CrewAI AMP timed out after {self.timeout.total:g}s", retryable=True) from exc
        except aiohttp.ClientError as exc:
            raise CrewError(f"CrewAI AMP unreachable ({type(exc).__name__})", retryable=True) from exc

    async def submit(self, request: CrewRequest) -> Answered | Accepted:
        envelope = request.envelope
        chatwoot = envelope.get("chatwoot") or {}
        body: dict[str, Any] = {
            "inputs": amp_inputs(envelope),
            "meta": {
                "request_id": request.request_id,
                "requestId": request.request_id,
                "source": "chatwoot-sidecar",
                "crew": request.crew,
                "account_id": chatwoot.get("account_id"),
                "conversation_id": chatwoot.get("conversation_id"),
                "message_ids": [m.get("id") for m in envelope.get("messages") or [] if isinstance(m, dict)],
            },
        }
        hook = self.callback_url(request.request_id)
        if hook:
            body["crewWebhookUrl"] = hook
        status, text, retry_after = await self._request("POST", f"{self.url}/kickoff", body)
        if status == 422:
            raise CrewError(f"CrewAI AMP refused the inputs (HTTP 422): {_validation_reason(text)}",
                            retryable=False, status_code=422, counts_against_backend=False)
        if status in (401, 403):
            raise CrewError(f"CrewAI AMP refused the token (HTTP {status}); check crews.{self.name}.token",
                            retryable=False, status_code=status, counts_against_backend=False)
        if status not in (200, 201, 202):
            raise classify_status(status, retry_after, text if status < 500 else "")
        kickoff_id = kickoff_id_from(parse_answer(text, "CrewAI AMP answer"))
        if kickoff_id is None:
            raise CrewError("CrewAI AMP kickoff answer has no kickoff_id", retryable=False,
                            status_code=status, counts_against_backend=False)
        self._started[kickoff_id] = time.monotonic()
        return Accepted(external_id=kickoff_id, poll_after=self.poll_interval, status_code=status)

    async def status(self, kickoff_id: str) -> dict[str, Any]:
        """The run's status document (``/status/{id}``, else ``/{id}/status``)."""
        ident = quote(kickoff_id, safe="")
        paths = [f"/{ident}/status", f"/status/{ident}"] if self._legacy_status_path else \
            [f"/status/{ident}", f"/{ident}/status"]
        status, text, retry_after = 404, "", None
        for index, path in enumerate(paths):
            status, text, retry_after = await self._request("GET", self.url + path)
            if status != 404:
                if index == 1:
                    self._legacy_status_path = not self._legacy_status_path
                break
        if status == 404:
            raise CrewError(f"CrewAI AMP does not know run {kickoff_id} (HTTP 404)", retryable=False,
                            status_code=404, counts_against_backend=False)
        if status in (401, 403):
            raise CrewError(f"CrewAI AMP refused the token (HTTP {status}); check crews.{self.name}.token",
                            retryable=False, status_code=status, counts_against_backend=False)
        if status != 200:
            raise classify_status(status, retry_after, text if status < 500 else "")
        doc = parse_answer(text, "CrewAI AMP answer")
        if not isinstance(doc, dict):
            raise CrewError("CrewAI AMP status answer is not an object", retryable=False,
                            counts_against_backend=False)
        return doc

    async def poll(self, request: CrewRequest) -> Answered | Accepted:
        kickoff_id = request.external_id or ""
        if not kickoff_id:
            raise CrewError("no kickoff id to poll", retryable=False, counts_against_backend=False)
        doc = await self.status(kickoff_id)
        return self.interpret(kickoff_id, doc)

    def interpret(self, kickoff_id: str, doc: dict[str, Any]) -> Answered | Accepted:
        state, output, error = normalise_status(doc)
        if state == "running":
            started = self._started.setdefault(kickoff_id, time.monotonic())
            wait = next_poll_interval(self.poll_interval, time.monotonic() - started)
            return Accepted(external_id=kickoff_id, poll_after=wait, status_code=200)
        self._started.pop(kickoff_id, None)
        if state == "failed":
            # A failed run is the crew's own failure; running it again costs money and most
            # likely fails the same way, so it goes to the failure policy (a human) at once.
            raise CrewError(f"CrewAI run {kickoff_id} failed: {error or 'no reason given'}"[:300],
                            retryable=False, status_code=200)
        return Answered(actions_from_output(output), status_code=200)

    async def probe(self) -> ProbeResult:
        """``GET {url}/inputs``: any HTTP answer below 500 means the deployment is reachable."""
        started = time.monotonic()
        try:
            async with self.session.get(f"{self.url}/inputs", headers=self._headers(),
                                        timeout=aiohttp.ClientTimeout(total=5), allow_redirects=False) as resp:
                latency = time.monotonic() - started
                note = " (token refused)" if resp.status in (401, 403) else ""
                return ProbeResult(resp.status < 500, f"HTTP {resp.status}{note}", latency)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return ProbeResult(False, f"unreachable ({type(exc).__name__})", time.monotonic() - started)
        except Exception as exc:  # noqa: BLE001 - a probe never raises
            return ProbeResult(False, f"probe failed ({type(exc).__name__})", time.monotonic() - started)

    async def close(self) -> None:
        return None  # the aiohttp session is shared and closed by the app


def _validation_reason(text: str) -> str:
    """Names the missing inputs of a 422 so the operator knows what the crew expects."""
    try:
        doc = json.loads(text)
    except ValueError:
        return text[:200] or "validation error"
    if not isinstance(doc, dict):
        return "validation error"
    details = doc.get("details") if isinstance(doc.get("details"), dict) else {}
    missing = details.get("missing_inputs") if isinstance(details, dict) else None
    message = str(doc.get("message") or doc.get("error") or "validation error")
    if isinstance(missing, list) and missing:
        return f"{message}: missing inputs {', '.join(str(m) for m in missing)}"
    return message[:200]
