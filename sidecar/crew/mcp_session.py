"""Provides SessionRunner: one MCP session (Streamable HTTP), owned by one task, shared by every call.

The SDK's transport and session are anyio context managers with task groups that must be entered
and exited by the same task, while the queue worker calls from a new task per job. So one
long-lived *owner* task per back-end holds the session open and runs each call inside it (as a
child of its task group), and callers just await a future. A transport failure ends the session
(its in-flight calls fail with that error); the next call opens a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, TypeVar

import anyio
import httpx
from mcp import ClientSession, McpError
from mcp.client.streamable_http import streamable_http_client
from mcp.types import Implementation, Tool

from sidecar import __version__
from sidecar.crew.base import CrewError
from sidecar.ops.logs import get_logger, log_event

log = get_logger()
T = TypeVar("T")


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
                            tools = await list_tools(session)
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
            cause = leaf(exc)
            log_event(log, "mcp.session_failed", level=30, url=self.shown_url, error=describe(cause))
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


async def list_tools(session: ClientSession) -> dict[str, Tool]:
    tools: dict[str, Tool] = {}
    cursor: str | None = None
    for _ in range(50):  # a server paging forever must not hang us
        page = await session.list_tools(cursor)
        tools.update((tool.name, tool) for tool in page.tools)
        cursor = page.nextCursor
        if not cursor:
            break
    return tools


def leaf(exc: BaseException) -> BaseException:
    """The first real cause inside (possibly nested) exception groups from anyio."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        inner = [e for e in exc.exceptions if not isinstance(e, asyncio.CancelledError)]
        exc = (inner or list(exc.exceptions))[0]
    return exc


def describe(exc: BaseException) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, McpError):
        return f"MCP error {exc.error.code}: {exc.error.message}"[:200]
    if isinstance(exc, CrewError):
        return str(exc)
    return type(exc).__name__
