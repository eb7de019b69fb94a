"""Provides the ``mcp`` back-end: a crew exposed as a tool of an MCP server (Streamable HTTP).

It uses the official ``mcp`` SDK (1.x): initialise a session, list the tools once per session,
call the configured tool with the envelope as its arguments, and read the answer from
``structuredContent``, else from JSON in the text content, else from the plain text.

Two shapes of server are spoken:

* a tool that answers the message (``handle_message`` by default): answered at once;
* CrewAI's ``enterprise-mcp-server`` (``tool: kickoff_crew``, or any ``status_tool``): the
  kickoff tool returns a run id, the job waits, and ``poll()`` calls ``get_crew_status`` (or
  ``status_tool``) until the run is done, reading the status like the AMP back-end does.

Sessions. The SDK's transport and session are anyio context managers with task groups that must
be entered and exited by the same task, while the queue worker calls us from a new task per job.
So one long-lived *owner* task per back-end holds the session open and runs each call inside
it (as a child of its task group), and callers just await a future. One session is reused by
every call until the server drops it (HTTP 404 "session not found": we open a new session and
retry that call once) or ``close()`` ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Generic, TypeVar

import anyio
import httpx
from mcp import ClientSession, McpError
from mcp.client.streamable_http import streamable_http_client
from mcp.types import (
    CONNECTION_CLOSED,
    INTERNAL_ERROR,
    CallToolResult,
    Implementation,
    TextContent,
    Tool,
)

from sidecar import __version__
from sidecar.config import CrewConfig
from sidecar.crew.amp import (
    actions_from_output,
    amp_inputs,
    kickoff_id_from,
    next_poll_interval,
    normalise_status,
)
from sidecar.crew.base import (
    Accepted,
    Answered,
    CrewError,
    CrewRequest,
    ProbeResult,
    classify_status,
)
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
# Words in a tool error's text that say trying again later may work. Everything else is final:
# a tool that ran and reported a failure will most likely fail the same way on a retry, and each
# retry re-runs a crew (cost, duplicate side effects), so the failure policy hands the
# conversation to a human instead.
_TRANSIENT_WORDS = ("timeout", "timed out", "temporar", "rate limit", "rate-limit", "try again", "retry",
                    "unavailable", "overloaded", "too many requests", "429", "502", "503", "504")
_ID_PARAMS = ("crew_id", "kickoff_id", "execution_id", "run_id", "id", "task_id")


# --------------------------------------------------------------------------------------------
# One MCP session, owned by one task
# --------------------------------------------------------------------------------------------


@dataclass
class Live:
    """An initialised session and its tool list (cached for the session's life)."""

    session: ClientSession
    tools: dict[str, Tool]
    generation: int


@dataclass(eq=False)
class _Job(Generic[T]):
    fn: Callable[[Live], Awaitable[T]]
    future: asyncio.Future[T]
    timeout: float


@dataclass(eq=False)
class _Reset:
    generation: int


class SessionRunner:
    """Holds one MCP session in a dedicated task and runs calls inside it.

    Calls of the same session run concurrently (JSON-RPC ids keep them apart). A transport
    failure (an HTTP error status, a refused connection) ends the session: its in-flight calls
    fail with that error, and the next call opens a new session.
    """

    def __init__(self, url: str, headers: dict[str, str], timeout: float) -> None:
        self.url = url
        # For logs: a hosted MCP URL may carry a key in its query string (``?api_key=…``).
        self.shown_url = url.split("?", 1)[0]
        self.headers = headers
        self.timeout = timeout
        self.generation = 0
        self.live: Live | None = None
        self._queue: asyncio.Queue[_Job[Any] | _Reset | None] = asyncio.Queue()
        self._owner: asyncio.Task[None] | None = None
        self._closed = False

    async def run(self, fn: Callable[[Live], Awaitable[T]], timeout: float | None = None) -> T:
        """Runs ``fn(live)`` inside the session; ``timeout`` bounds the call itself."""
        if self._closed:
            raise CrewError("MCP back-end is closed (configuration changed)", retryable=True,
                            counts_against_backend=False)
        if self._owner is None or self._owner.done():
            self._owner = asyncio.create_task(self._own(), name=f"mcp-session {self.shown_url}")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        limit = timeout if timeout is not None else self.timeout
        self._queue.put_nowait(_Job(fn, future, limit))
        # Backstop: opening a session and the call each have their own limit; this only guards
        # against an owner that is stuck somewhere we did not foresee.
        return await asyncio.wait_for(future, timeout=limit * 2 + 5)

    def reset(self, generation: int) -> None:
        """Asks for a new session before the next call, if ``generation`` is still current."""
        self._queue.put_nowait(_Reset(generation))

    async def close(self) -> None:
        """Lets in-flight calls finish (bounded by their timeouts), then ends the session."""
        self._closed = True
        owner = self._owner
        if owner is None or owner.done():
            return
        self._queue.put_nowait(None)
        try:
            await asyncio.wait_for(asyncio.shield(owner), timeout=self.timeout + 5)
        except (TimeoutError, asyncio.CancelledError):
            owner.cancel()
            with contextlib.suppress(BaseException):
                await owner

    # -- owner task ------------------------------------------------------------------------
    async def _own(self) -> None:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            if isinstance(item, _Reset):
                continue  # no session open: the next one is new anyway
            if item.future.done():
                continue  # the caller gave up meanwhile
            stop = await self._serve(item)
            if stop:
                return

    async def _serve(self, first: _Job[Any]) -> bool:
        """One session's life. Returns True when the runner is closing."""
        accepted: list[_Job[Any]] = [first]
        closing = False
        try:
            async with httpx.AsyncClient(headers=self.headers,
                                         timeout=httpx.Timeout(self.timeout, read=self.timeout + 5)) as http:
                async with streamable_http_client(self.url, http_client=http) as (read, write, _):
                    async with ClientSession(read, write, read_timeout_seconds=timedelta(seconds=self.timeout + 5),
                                             client_info=Implementation(name="chatwoot-sidecar",
                                                                        version=__version__)) as session:
                        with anyio.fail_after(self.timeout):
                            await session.initialize()
                            tools = await _list_tools(session)
                        self.generation += 1
                        live = self.live = Live(session, tools, self.generation)
                        log_event(log, "mcp.session_opened", url=self.shown_url, tools=len(tools),
                                  generation=live.generation)
                        async with anyio.create_task_group() as group:
                            group.start_soon(self._call, first, live)
                            while True:
                                item = await self._queue.get()
                                if item is None:
                                    closing = True
                                    break
                                if isinstance(item, _Reset):
                                    if item.generation == live.generation:
                                        break
                                    continue
                                accepted.append(item)
                                group.start_soon(self._call, item, live)
                        # Leaving the blocks waits for in-flight calls, then DELETEs the session.
        except Exception as exc:  # noqa: BLE001 - the session died; tell its callers why
            cause = _leaf(exc)
            log_event(log, "mcp.session_failed", level=30, url=self.shown_url, error=_describe(cause))
            for job in accepted:
                if not job.future.done():
                    job.future.set_exception(cause)
        finally:
            self.live = None
        return closing

    async def _call(self, job: _Job[Any], live: Live) -> None:
        if job.future.done():
            return
        try:
            with anyio.fail_after(job.timeout):
                result = await job.fn(live)
        except Exception as exc:  # noqa: BLE001 - handed to the caller, not to the task group
            if not job.future.done():
                job.future.set_exception(exc)
            return
        if not job.future.done():
            job.future.set_result(result)


async def _list_tools(session: ClientSession) -> dict[str, Tool]:
    tools: dict[str, Tool] = {}
    cursor: str | None = None
    for _ in range(50):  # a server paging forever must not hang us
        page = await session.list_tools(cursor)
        tools.update((tool.name, tool) for tool in page.tools)
        cursor = page.nextCursor
        if not cursor:
            break
    return tools


def _leaf(exc: BaseException) -> BaseException:
    """The first real cause inside (possibly nested) exception groups from anyio."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        inner = [e for e in exc.exceptions if not isinstance(e, asyncio.CancelledError)]
        exc = (inner or list(exc.exceptions))[0]
    return exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, McpError):
        return f"MCP error {exc.error.code}: {exc.error.message}"[:200]
    if isinstance(exc, CrewError):
        return str(exc)
    return type(exc).__name__


# --------------------------------------------------------------------------------------------
# Result parsing (pure functions, unit-tested)
# --------------------------------------------------------------------------------------------


def result_text(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent)).strip()


def tool_error(name: str, result: CallToolResult) -> CrewError:
    """``isError: true``: final unless the tool's text says the failure is temporary."""
    text = result_text(result) or "no detail"
    retryable = any(word in text.lower() for word in _TRANSIENT_WORDS)
    return CrewError(f"MCP tool {name} failed: {text}"[:300], retryable=retryable, counts_against_backend=False)


def result_document(result: CallToolResult) -> Any:
    """The tool's answer as data: ``structuredContent`` (unwrapping FastMCP's ``{"result": …}``
    for non-object return types), else JSON in the text, else the text itself."""
    structured = result.structuredContent
    if isinstance(structured, dict) and structured:
        if set(structured) == {"result"}:
            return structured["result"]
        return structured
    text = result_text(result)
    if text[:1] in "{[":
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def actions_from_result(name: str, result: CallToolResult) -> tuple[dict[str, Any], ...]:
    if result.isError:
        raise tool_error(name, result)
    doc = result_document(result)
    if isinstance(doc, dict) and not isinstance(doc.get("actions"), list) and result.structuredContent:
        # Structured, but not a reply document: the text may still carry one.
        text = result_text(result)
        if text:
            return actions_from_output(text)
    return actions_from_output(doc)


def kickoff_id_from_result(name: str, result: CallToolResult) -> str:
    if result.isError:
        raise tool_error(name, result)
    doc = result_document(result)
    found = kickoff_id_from(doc)
    if found is None and isinstance(doc, str):
        # Wrappers sometimes print the AMP answer as text ("{'kickoff_id': '…'}").
        match = re.search(r"kickoff_id\W+([A-Za-z0-9-]{6,})", doc) or re.search(
            r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", doc)
        if match:
            found = match.group(match.lastindex or 0)
    if found is None:
        raise CrewError(f"MCP tool {name} returned no run id", retryable=False, counts_against_backend=False)
    return found


def arguments_for(tool: Tool | None, envelope: dict[str, Any], *, kickoff: bool) -> dict[str, Any]:
    """The arguments of the configured tool, adapted to its input schema when we can tell.

    * a kickoff tool with an ``inputs`` parameter (CrewAI's) gets AMP's string-only inputs;
    * a tool with one parameter that is not an envelope key (``envelope``, ``request``) gets
      the whole envelope under that name;
    * otherwise the envelope's keys are the arguments.
    """
    props = _properties(tool)
    if kickoff:
        inputs = amp_inputs(envelope)
        if "inputs" in props or not props:
            args: dict[str, Any] = {"inputs": inputs}
            if "meta" in props:
                args["meta"] = {"request_id": envelope.get("request_id"), "source": "chatwoot-sidecar"}
            return args
        return {key: value for key, value in inputs.items() if key in props} or dict(inputs)
    if len(props) == 1:
        (only,) = props
        if only not in envelope:
            return {only: envelope}
    return dict(envelope)


def status_arguments(tool: Tool | None, run_id: str) -> dict[str, Any]:
    """``{crew_id: …}`` (CrewAI's server), or whichever id parameter the status tool declares."""
    props = _properties(tool)
    for name in _ID_PARAMS:
        if name in props:
            return {name: run_id}
    required = tool.inputSchema.get("required") if tool is not None else None
    if isinstance(required, list) and required:
        return {str(required[0]): run_id}
    if len(props) == 1:
        return {next(iter(props)): run_id}
    return {"crew_id": run_id}


def _properties(tool: Tool | None) -> dict[str, Any]:
    props = tool.inputSchema.get("properties") if tool is not None else None
    return props if isinstance(props, dict) else {}


# --------------------------------------------------------------------------------------------
# The back-end
# --------------------------------------------------------------------------------------------


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
            live.tools = await _list_tools(live.session)
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
