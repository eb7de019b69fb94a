"""Provides the ``mcp`` back-end: a crew exposed as a tool of an MCP server (Streamable HTTP).

It uses the official ``mcp`` SDK (1.x): initialise a session, list the tools once per session,
call the configured tool with the envelope as its arguments, and read the answer from
``structuredContent``, else from JSON in the text content, else from the plain text.

Two shapes of server are spoken:

* a tool that answers the message (``handle_message`` by default): answered at once;
* CrewAI's ``enterprise-mcp-server`` (``tool: kickoff_crew``, or any ``status_tool``): the
  kickoff tool returns a run id, the job waits, and ``poll()`` calls ``get_crew_status`` (or
  ``status_tool``) until the run is done, reading the status like the AMP back-end does.

One session (:mod:`sidecar.crew.mcp_session`) is reused by every call until the server drops it
(HTTP 404 "session not found": we open a new session and retry that call once) or ``close()``
ends it; reading answers and building arguments is :mod:`sidecar.crew.mcp_results`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import httpx
from mcp import McpError
from mcp.types import CONNECTION_CLOSED, INTERNAL_ERROR, CallToolResult, Tool

from sidecar.config import CrewConfig
from sidecar.crew.amp import actions_from_output, next_poll_interval, normalise_status
from sidecar.crew.base import (
    Accepted,
    Answered,
    CrewError,
    CrewRequest,
    ProbeResult,
    classify_status,
)
from sidecar.crew.mcp_results import (
    actions_from_result,
    arguments_for,
    kickoff_id_from_result,
    result_document,
    status_arguments,
    tool_error,
)
from sidecar.crew.mcp_session import Live, SessionRunner, list_tools
from sidecar.ops.logs import get_logger, log_event

log = get_logger()
T = TypeVar("T")

# The SDK (and httpx under it) log every HTTP request and session id at INFO: noise in the
# sidecar's log, and a session id is a bearer-like value. Their warnings still show.
for _name in ("httpx", "mcp.client.streamable_http", "mcp.client.session"):
    logging.getLogger(_name).setLevel(logging.WARNING)

PROBE_TIMEOUT_SECONDS = 5.0
# The SDK reports an HTTP 404 on a session (expired or unknown to a restarted server) as this
# JSON-RPC error (its code is the positive twin of INVALID_REQUEST).
_SESSION_GONE_CODES = frozenset({32600, CONNECTION_CLOSED})
_SESSION_GONE_TEXT = ("session terminated", "session not found", "connection closed")


@dataclass
class _Runs:
    """When each kickoff was first seen, for the polling backoff."""

    started: dict[str, float] = field(default_factory=dict)


class McpCrewBackend:
    """Calls a crew that an MCP server exposes as a tool."""

    kind = "mcp"
    supports_callback = False

    def __init__(self, crew: CrewConfig) -> None:
        self.name = crew.name
        self.url = crew.url
        self.tool = crew.tool
        self.kickoff = crew.tool == "kickoff_crew" or bool(crew.status_tool)
        self.status_tool = crew.status_tool or "get_crew_status"
        self.timeout = crew.timeout_seconds
        self.poll_interval = crew.poll_interval_seconds
        headers = dict(crew.headers)
        if crew.token:
            headers["Authorization"] = f"Bearer {crew.token}"
        self.runner = SessionRunner(crew.url, headers, crew.timeout_seconds)
        self.breaker_key = f"mcp:{crew.url}"
        self._runs = _Runs()

    async def _with_session(self, fn: Callable[[Live], Awaitable[T]], timeout: float | None = None) -> T:
        """Runs ``fn`` in the session; a session the server forgot is replaced once."""
        for attempt in (1, 2):
            try:
                return await self.runner.run(fn, timeout)
            except CrewError:
                raise
            except Exception as exc:  # noqa: BLE001 - mapped to CrewError below
                if _session_gone(exc) and attempt == 1:
                    generation = self.runner.generation
                    log_event(log, "mcp.session_expired", level=30, crew=self.name, url=self.runner.shown_url,
                              generation=generation)
                    self.runner.reset(generation)
                    continue
                raise _crew_error(exc, self.timeout) from exc
        raise AssertionError("unreachable")

    async def submit(self, request: CrewRequest) -> Answered | Accepted:
        name = self.tool
        envelope = request.envelope

        async def call(live: Live) -> CallToolResult:
            tool = live.tools.get(name)
            if tool is None:
                raise CrewError(f"MCP server has no tool {name!r} (it offers: {', '.join(sorted(live.tools)) or 'none'})",
                                retryable=False, counts_against_backend=False)
            return await live.session.call_tool(name, arguments_for(tool, envelope, kickoff=self.kickoff))

        result = await self._with_session(call)
        if not self.kickoff:
            return Answered(actions_from_result(name, result))
        run_id = kickoff_id_from_result(name, result)
        self._runs.started[run_id] = time.monotonic()
        return Accepted(external_id=run_id, poll_after=self.poll_interval)

    async def poll(self, request: CrewRequest) -> Answered | Accepted:
        run_id = request.external_id or ""
        if not self.kickoff or not run_id:
            raise CrewError("this MCP crew has nothing to poll", retryable=False, counts_against_backend=False)
        name = self.status_tool

        async def call(live: Live) -> CallToolResult:
            tool = live.tools.get(name)
            if tool is None:
                raise CrewError(f"MCP server has no status tool {name!r}", retryable=False,
                                counts_against_backend=False)
            return await live.session.call_tool(name, status_arguments(tool, run_id))

        result = await self._with_session(call)
        if result.isError:
            raise tool_error(name, result)
        doc = result_document(result)
        if not isinstance(doc, dict):
            raise CrewError(f"MCP status tool {name} did not answer a status object", retryable=False,
                            counts_against_backend=False)
        state, output, error = normalise_status(doc)
        if state == "running":
            started = self._runs.started.setdefault(run_id, time.monotonic())
            return Accepted(external_id=run_id,
                            poll_after=next_poll_interval(self.poll_interval, time.monotonic() - started))
        self._runs.started.pop(run_id, None)
        if state == "failed":
            raise CrewError(f"crew run {run_id} failed: {error or 'no reason given'}"[:300], retryable=False)
        return Answered(actions_from_output(output))

    async def probe(self) -> ProbeResult:
        """A ``tools/list`` in the shared session (opening one if needed), within 5 s; never raises."""
        started = time.monotonic()

        async def listing(live: Live) -> dict[str, Tool]:
            live.tools = await list_tools(live.session)
            return live.tools

        try:
            tools = await asyncio.wait_for(self._with_session(listing, PROBE_TIMEOUT_SECONDS),
                                           timeout=PROBE_TIMEOUT_SECONDS * 2)
        except CrewError as exc:
            return ProbeResult(False, str(exc)[:200], time.monotonic() - started)
        except Exception as exc:  # noqa: BLE001 - a probe never raises
            return ProbeResult(False, f"unreachable ({type(exc).__name__})", time.monotonic() - started)
        latency = time.monotonic() - started
        wanted = [self.tool] + ([self.status_tool] if self.kickoff else [])
        missing = [name for name in wanted if name not in tools]
        if missing:
            return ProbeResult(False, f"tool missing: {', '.join(missing)}", latency)
        return ProbeResult(True, f"{len(tools)} tools", latency)

    async def close(self) -> None:
        await self.runner.close()


def _session_gone(exc: BaseException) -> bool:
    if isinstance(exc, McpError):
        message = (exc.error.message or "").lower()
        return exc.error.code in _SESSION_GONE_CODES or any(text in message for text in _SESSION_GONE_TEXT)
    return False


def _crew_error(exc: BaseException, timeout: float) -> CrewError:
    """Maps SDK, transport and timeout failures to the worker's retry vocabulary."""
    if isinstance(exc, CrewError):
        return exc
    if isinstance(exc, TimeoutError):
        return CrewError(f"MCP call timed out after {timeout:g}s", retryable=True)
    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        if status in (401, 403):
            return CrewError(f"MCP server refused the credentials (HTTP {status})", retryable=False,
                             status_code=status, counts_against_backend=False)
        return classify_status(status, None)
    if isinstance(exc, httpx.TimeoutException):
        return CrewError(f"MCP call timed out after {timeout:g}s", retryable=True)
    if isinstance(exc, httpx.TransportError):
        return CrewError(f"MCP server unreachable ({type(exc).__name__})", retryable=True)
    if isinstance(exc, McpError):
        code, message = exc.error.code, exc.error.message or ""
        if _session_gone(exc):
            return CrewError(f"MCP session lost twice in a row: {message}"[:200], retryable=True)
        if code in (408, -32001) or "timed out" in message.lower():
            return CrewError(f"MCP call timed out after {timeout:g}s", retryable=True)
        # A protocol error (bad params, unknown method) will not fix itself; a server-side
        # internal error might.
        return CrewError(f"MCP error {code}: {message}"[:300], retryable=code == INTERNAL_ERROR,
                         counts_against_backend=code == INTERNAL_ERROR)
    return CrewError(f"MCP call failed ({type(exc).__name__})", retryable=True)
