"""Provides the seed's HTTP MCP-Crew back-end (dialects ``connector-v1`` and ``chatwootai``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson

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
from sidecar.outbound.http11 import Http11, HttpError
from sidecar.queue.retry import parse_retry_after


class HttpCrewBackend:
    """POSTs the envelope to MCP-Crew; 200 answers now, 202 answers by callback."""

    kind = "http"
    supports_callback = True

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        url: str,
        api_key: str,
        dialect: str,
        timeout_seconds: float,
        http: Http11 | None = None,
    ) -> None:
        self.session = session
        """For probes; requests go through ``http`` (the lean keep-alive client)."""
        self.http = http or Http11()
        self.url = url
        self.api_key = api_key
        self.dialect = dialect
        self.timeout_seconds = timeout_seconds
        self.breaker_key = f"http:{url}"

    def _headers(self, request_id: str | None = None) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        if request_id:
            headers["Idempotency-Key"] = request_id
        return headers

    def _body(self, request: CrewRequest) -> bytes:
        if self.dialect == "chatwootai":
            return orjson.dumps(chatwootai_body(request.envelope))
        return request.envelope_json.encode()  # the stored bytes: every retry sends the same body

    async def submit(self, request: CrewRequest) -> Answered | Accepted:
        if not self.url:
            raise CrewError("mcp_crew.api_url is not configured", retryable=False, counts_against_backend=False)
        try:
            async with asyncio.timeout(self.timeout_seconds):
                resp = await self.http.request("POST", self.http.target(self.url), self._headers(request.request_id),
                                               self._body(request))
        except TimeoutError as exc:
            raise CrewError(f"crew timed out after {self.timeout_seconds:g}s", retryable=True) from exc
        except HttpError as exc:
            raise CrewError(f"crew unreachable ({type(exc).__name__}: {exc})", retryable=True) from exc
        raw, status = resp.body, resp.status
        retry_after = parse_retry_after(resp.headers.get("retry-after"))
        if status == 202 and self.dialect == "connector-v1":
            return Accepted(external_id=request.request_id, status_code=status)
        if status != 200:
            hint = raw.decode("utf-8", "replace") if status < 500 else ""
            raise classify_status(status, retry_after, hint)
        doc = parse_answer(raw, "crew answer")
        if self.dialect == "chatwootai":
            return Answered(chatwootai_actions(doc), status_code=status)
        return Answered(parse_actions(doc), status_code=status)

    async def poll(self, request: CrewRequest) -> Answered | Accepted:
        # connector-v1 answers asynchronously only by callback; nothing to poll.
        return Accepted(external_id=request.external_id or request.request_id)

    async def probe(self) -> ProbeResult:
        """Reachability only: any HTTP answer means the service is up."""
        if not self.url:
            return ProbeResult(False, "not configured")
        started = time.monotonic()
        try:
            async with self.session.get(
                self.url, headers=self._headers(), timeout=aiohttp.ClientTimeout(total=5), allow_redirects=False
            ) as resp:
                latency = time.monotonic() - started
                if resp.status >= 500:
                    return ProbeResult(False, f"HTTP {resp.status}", latency)
                return ProbeResult(True, f"HTTP {resp.status}", latency)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return ProbeResult(False, f"unreachable ({type(exc).__name__})", time.monotonic() - started)

    async def close(self) -> None:
        return None


def chatwootai_body(envelope: dict[str, Any]) -> dict[str, Any]:
    """The seed's own MCP-Crew request: ``{"action":"process_message","data":{...}}``."""
    messages = envelope.get("messages") or []
    last = messages[-1] if messages else {}
    contact = envelope.get("contact") or {}
    chatwoot = envelope.get("chatwoot") or {}
    return {
        "action": "process_message",
        "data": {
            "message": "\n".join(m.get("content") or "" for m in messages).strip(),
            "message_id": last.get("id"),
            "conversation_id": chatwoot.get("conversation_id"),
            "sender": {"id": contact.get("id"), "name": contact.get("name"), "type": "contact"},
            "channel": chatwoot.get("channel"),
            "context": {
                "history": envelope.get("history") or [],
                "crew": envelope.get("crew"),
                "request_id": envelope.get("request_id"),
            },
        },
    }


def chatwootai_actions(doc: Any) -> tuple[dict[str, Any], ...]:
    """``{"auto_reply": bool, "reply_content": …}`` as actions."""
    if not isinstance(doc, dict):
        raise CrewError("chatwootai answer is not an object", retryable=False, counts_against_backend=False)
    if doc.get("auto_reply") is True:
        content = doc.get("reply_content")
        if not isinstance(content, str):
            raise CrewError("chatwootai answer has no reply_content", retryable=False, counts_against_backend=False)
        return ({"type": "reply", "content": content},)
    return ()
