"""Provides the Chatwoot REST client (CONTRACT §6): one aiohttp session, explicit timeouts.

The client makes one HTTP call per method and reports failures as ChatwootError; the
queue worker owns the retry schedule (processing backoff), so a retry never re-runs the
crew and never re-posts a message whose creation is still in doubt.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from sidecar.config import Config
from sidecar.ops.metrics import Metrics
from sidecar.ops.slots import Slots
from sidecar.outbound.http11 import Http11, HttpError, Unreachable
from sidecar.queue.retry import parse_retry_after

NO_TYPING_CHANNELS = frozenset({"whatsapp", "facebook", "instagram"})
"""Chatwoot shows typing in its dashboard and the website widget only; it does not forward it to
WhatsApp, Facebook or Instagram, so those calls would be wasted."""


@dataclass
class ChatwootError(Exception):
    operation: str
    reason: str
    retryable: bool
    status_code: int | None = None
    retry_after: float | None = None
    ambiguous: bool = False
    """The request may have reached Chatwoot (the connection dropped after sending)."""

    def __str__(self) -> str:
        return f"chatwoot {self.operation}: {self.reason}"


class ChatwootClient:
    def __init__(self, session: aiohttp.ClientSession, config: Callable[[], Config], metrics: Metrics,
                 slots: Slots | None = None, http: Http11 | None = None) -> None:
        self.session = session
        """For the probe; API calls go through ``http`` (the lean keep-alive client)."""
        self.http = http or Http11()
        self._config = config
        self.metrics = metrics
        self._slots = slots or Slots()
        """Bounds Chatwoot calls in flight (``chatwoot.max_in_flight``)."""

    def _url(self, account_id: int, conversation_id: int, suffix: str) -> str:
        base = self._config().chatwoot.api_base
        path = f"/api/v1/accounts/{account_id}/conversations/{conversation_id}"
        return f"{base}{path}{'/' + suffix if suffix else ''}"

    async def _call(
        self, operation: str, method: str, url: str, body: dict[str, Any] | None = None
    ) -> Any:
        config = self._config()
        headers = {"api_access_token": config.chatwoot.api_access_token, "Accept": "application/json"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = orjson.dumps(body)
        timeout = config.chatwoot.timeout_seconds
        outcome = "error"
        started = 0.0
        async with self._slots.slot("chatwoot", config.chatwoot.max_in_flight):
            # The clock starts once a slot is free: waiting for one is never part of the timeout.
            started = time.monotonic()
            try:
                async with asyncio.timeout(timeout):
                    resp = await self.http.request(method, self.http.target(url), headers, data or b"")
                if 200 <= resp.status < 300:
                    outcome = "ok"
                    return _json_or_none(resp.body)
                outcome = f"http_{resp.status}"
                retry_after = parse_retry_after(resp.headers.get("retry-after"))
                retryable = resp.status >= 500 or resp.status == 429
                # A gateway timeout or bad gateway may come after Chatwoot itself stored the
                # request; every other status is Chatwoot's own "not done".
                ambiguous = resp.status in (502, 504)
                raise ChatwootError(operation, f"HTTP {resp.status}", retryable, resp.status, retry_after,
                                    ambiguous=ambiguous)
            except TimeoutError as exc:
                outcome = "timeout"
                raise ChatwootError(operation, "timed out", True, ambiguous=True) from exc
            except Unreachable as exc:
                # Never connected: the request certainly did not reach Chatwoot.
                outcome = "unreachable"
                raise ChatwootError(operation, f"unreachable ({exc})", True) from exc
            except HttpError as exc:
                outcome = "disconnected"
                raise ChatwootError(operation, f"connection lost ({exc})", True, ambiguous=True) from exc
            finally:
                self.metrics.inc("connector_chatwoot_requests_total", operation=operation, outcome=outcome)
                self.metrics.observe("connector_chatwoot_request_duration_seconds", time.monotonic() - started,
                                     operation=operation)

    async def create_message(self, account_id: int, conversation_id: int, content: str, *, private: bool) -> dict[str, Any]:
        # Never a source_id: Chatwoot would treat the message as already delivered.
        body = {"content": content, "message_type": "outgoing", "private": private}
        answer = await self._call("note" if private else "reply", "POST",
                                  self._url(account_id, conversation_id, "messages"), body)
        return answer if isinstance(answer, dict) else {}

    async def list_messages(self, account_id: int, conversation_id: int) -> list[dict[str, Any]] | None:
        """Recent messages, or None when the token may not list them (agent-bot tokens)."""
        try:
            answer = await self._call("list_messages", "GET", self._url(account_id, conversation_id, "messages"))
        except ChatwootError as exc:
            if exc.status_code in (401, 403):
                return None
            raise
        payload = answer.get("payload") if isinstance(answer, dict) else None
        return payload if isinstance(payload, list) else []

    async def toggle_status(self, account_id: int, conversation_id: int, status: str) -> None:
        await self._call(f"status_{status}", "POST", self._url(account_id, conversation_id, "toggle_status"),
                         {"status": status})

    async def assign(self, account_id: int, conversation_id: int, *, assignee_id: int | None = None,
                     team_id: int | None = None) -> None:
        body: dict[str, Any] = {}
        if assignee_id is not None:
            body["assignee_id"] = assignee_id
        if team_id is not None:
            body["team_id"] = team_id
        await self._call("assign", "POST", self._url(account_id, conversation_id, "assignments"), body)

    async def get_labels(self, account_id: int, conversation_id: int) -> list[str] | None:
        answer = await self._call("labels_get", "GET", self._url(account_id, conversation_id, "labels"))
        payload = answer.get("payload") if isinstance(answer, dict) else None
        return [x for x in payload if isinstance(x, str)] if isinstance(payload, list) else None

    async def set_labels(self, account_id: int, conversation_id: int, labels: list[str]) -> None:
        # POST replaces the whole list: callers send the union.
        await self._call("labels", "POST", self._url(account_id, conversation_id, "labels"), {"labels": labels})

    async def typing(self, account_id: int, conversation_id: int, on: bool) -> None:
        await self._call("typing", "POST", self._url(account_id, conversation_id, "toggle_typing_status"),
                         {"typing_status": "on" if on else "off"})

    async def probe(self) -> tuple[bool, str]:
        """Whether Chatwoot answers and accepts the token: one cheap authenticated read.

        ``GET /api/v1/profile`` (see PROBE_PATH for why this call). Returns ``(ok, detail)``;
        the detail never contains the token.
        """
        config = self._config()
        if not config.chatwoot.api_base:
            return False, "not configured"
        token = config.chatwoot.api_access_token
        if not token:
            return False, "no token: set chatwoot.api_access_token"
        headers = {"api_access_token": token, "Accept": "application/json"}
        try:
            async with self.session.get(config.chatwoot.api_base + PROBE_PATH, headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=5), allow_redirects=False) as resp:
                # Only the start of a 401's body matters (which refusal it is); never more.
                head = await resp.content.read(2048) if resp.status == 401 else b""
                return probe_verdict(resp.status, head.decode("utf-8", "replace"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            return False, f"unreachable ({type(exc).__name__})"


PROBE_PATH = "/api/v1/profile"
"""The health probe's call. Chatwoot authenticates every ``/api`` request in the same order
(``app/controllers/api/base_controller.rb``): the token is looked up first (unknown: 401
``Invalid Access Token``), then an agent-bot token is checked against the few endpoints bots
may call (others: 401 ``Access to this endpoint is not authorized for bots``). So the profile
answers 200 for a user token and that second 401 for a live agent-bot token, and only a wrong
or revoked token gets the first: one read of one row, valid for both kinds of token. The
calls a bot may make are all per conversation (``/accounts/{id}/conversations/{id}/...``) and
need ids the sidecar only learns from webhooks, so none of them can serve as a probe."""

BOT_ENDPOINT_REFUSED = "not authorized for bots"
"""Part of Chatwoot's 401 body for an agent-bot token on a user-only endpoint (the token is valid)."""


def probe_verdict(status: int, body: str) -> tuple[bool, str]:
    """``(ok, detail)`` for Chatwoot's answer to ``GET /api/v1/profile``."""
    if 200 <= status < 300:
        return True, "token accepted (user token)"
    if status == 401 and BOT_ENDPOINT_REFUSED in body:
        return True, "token accepted (agent-bot token)"
    if status in (401, 403):
        return False, f"token refused (HTTP {status}): check chatwoot.api_access_token"
    if status == 429:
        return True, "reachable, rate limited (HTTP 429): token not checked this time"
    if 300 <= status < 400:
        return False, f"redirected (HTTP {status}): set chatwoot.api_url to the address Chatwoot answers on"
    if status == 404:
        return False, f"HTTP 404 for {PROBE_PATH}: is chatwoot.api_url the address of Chatwoot?"
    return False, f"HTTP {status}"


def _json_or_none(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
