"""A fake crew exposed as MCP tools: a real FastMCP server (Streamable HTTP) on 127.0.0.1.

Built with the ``mcp`` SDK's FastMCP and served by uvicorn inside the caller's event loop.
Tools:

* ``handle_message`` (envelope keys as arguments): answers with the ``mode`` knob's shape:
  ``structured`` (structuredContent ``{"actions": …}``), ``json_text`` (the reply document as
  text), ``list_text`` (a bare list of actions as text), ``plain_text`` (just the reply text),
  or ``error`` (the tool raises: ``isError: true``);
* ``kickoff_crew(inputs)`` and ``get_crew_status(crew_id)``: CrewAI's enterprise-mcp-server
  shape; a run stays ``STARTED`` for ``kickoff_polls`` status calls, then ``SUCCESS``.

``restart()`` replaces the server on the same port: every session the sidecar held is then
unknown and answered 404, as after a real crew server restart or a session expiry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import uvicorn
from mcp.server.fastmcp import FastMCP
from mcp.types import CallToolResult, TextContent

from .fake_crew import default_responder, envelope_text

__all__ = ["FakeMcp", "ToolCall"]

Mode = Literal["structured", "json_text", "list_text", "plain_text", "error"]


@dataclass
class ToolCall:
    tool: str
    arguments: dict[str, Any]
    authorization: str


class FakeMcp:
    """``async with FakeMcp() as mcp:`` then point a crew at ``mcp.url``."""

    def __init__(self, *, token: str = "mcp-test-token") -> None:
        self.token = token
        self.port = 0
        self.mode: Mode = "structured"
        self.error_text = "crew exploded: invalid product catalogue"
        self.responder: Callable[[dict[str, Any]], list[dict[str, Any]]] = default_responder
        self.kickoff_polls = 2
        self.kickoff_state_words = ("STARTED", "SUCCESS")
        self.calls: list[ToolCall] = []
        self.unauthorized = 0
        self.sessions_started = 0
        self.expired_answers = 0  # requests refused with 404 because their session expired
        self._seen_sessions: set[str] = set()
        self._expired: set[str] = set()
        self._runs: dict[str, dict[str, Any]] = {}
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None
        self._changed = asyncio.Condition()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    # ------------------------------------------------------------------------------ lifecycle
    async def start(self) -> FakeMcp:
        # The socket is bound and listening before uvicorn runs, so the URL works at once
        # (early connections wait in the backlog until the app's lifespan has started).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(128)
        sock.setblocking(False)
        self.port = int(sock.getsockname()[1])
        self._socket = sock
        config = uvicorn.Config(self._build(), log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="fake-mcp")
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server, self._task, self._socket = None, None, None

    async def restart(self) -> None:
        """A new server on the same port: sessions issued before are unknown (404)."""
        await self.stop()
        await self.start()

    def expire_sessions(self) -> None:
        """Every session used so far is expired: its next request is answered 404."""
        self._expired |= self._seen_sessions

    async def __aenter__(self) -> FakeMcp:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------------------ waiting
    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        async def until() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        await asyncio.wait_for(until(), timeout)

    async def _record(self, tool: str, arguments: dict[str, Any], authorization: str) -> None:
        self.calls.append(ToolCall(tool, arguments, authorization))
        async with self._changed:
            self._changed.notify_all()

    def calls_to(self, tool: str) -> list[ToolCall]:
        return [c for c in self.calls if c.tool == tool]

    # ------------------------------------------------------------------------------ server
    def _build(self) -> Any:
        server = FastMCP("fake-crew", host="127.0.0.1", port=self.port, log_level="WARNING")
        fake = self
        current_auth: dict[str, str] = {"value": ""}

        @server.tool()
        async def handle_message(messages: list[dict[str, Any]], request_id: str = "", crew: str = "",
                                 chatwoot: dict[str, Any] | None = None, contact: dict[str, Any] | None = None,
                                 history: list[dict[str, Any]] | None = None) -> CallToolResult:
            """Answers a customer's burst of messages (the connector's envelope)."""
            envelope = {"messages": messages, "request_id": request_id, "crew": crew, "chatwoot": chatwoot or {},
                        "contact": contact or {}, "history": history or []}
            await fake._record("handle_message", envelope, current_auth["value"])
            return fake._answer(envelope)

        @server.tool()
        async def kickoff_crew(inputs: dict[str, Any]) -> dict[str, Any]:
            """Starts a crew run (CrewAI enterprise-mcp-server shape)."""
            await fake._record("kickoff_crew", {"inputs": inputs}, current_auth["value"])
            if fake.mode == "error":
                raise RuntimeError(fake.error_text)
            run_id = str(uuid.uuid4())
            fake._runs[run_id] = {"inputs": inputs, "polls": 0}
            return {"kickoff_id": run_id}

        @server.tool()
        async def get_crew_status(crew_id: str) -> dict[str, Any]:
            """The status of a crew run."""
            await fake._record("get_crew_status", {"crew_id": crew_id}, current_auth["value"])
            run = fake._runs.get(crew_id)
            if run is None:
                raise ValueError(f"unknown crew_id {crew_id}")
            run["polls"] += 1
            running, done = fake.kickoff_state_words
            if run["polls"] <= fake.kickoff_polls:
                return {"state": running, "status": running.lower()}
            envelope = {"messages": [{"content": run["inputs"].get("message", "")}],
                        "crew": json.loads(run["inputs"].get("context_json") or "{}").get("crew", "")}
            output = json.dumps({"actions": fake.responder(envelope)}, ensure_ascii=False)
            return {"state": done, "result": output}

        inner = server.streamable_http_app()

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            # Bearer check in front of the MCP app, like a gateway would do it.
            if scope["type"] == "http":
                headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
                auth = headers.get("authorization", "")
                if fake.token and auth != f"Bearer {fake.token}":
                    fake.unauthorized += 1
                    await send({"type": "http.response.start", "status": 401,
                                "headers": [(b"content-type", b"application/json")]})
                    await send({"type": "http.response.body", "body": b'{"error":"unauthorized"}'})
                    return
                current_auth["value"] = auth
                session_id = headers.get("mcp-session-id")
                if session_id in fake._expired:
                    # What a server answers for a session it expired (spec: 404, re-initialise).
                    fake.expired_answers += 1
                    await send({"type": "http.response.start", "status": 404,
                                "headers": [(b"content-type", b"application/json")]})
                    await send({"type": "http.response.body", "body": b'{"jsonrpc":"2.0","id":"server-error",'
                                b'"error":{"code":-32600,"message":"Session not found"}}'})
                    return
                if session_id:
                    fake._seen_sessions.add(session_id)
                elif scope.get("method") == "POST":
                    fake.sessions_started += 1
            await inner(scope, receive, send)

        return app

    def _answer(self, envelope: dict[str, Any]) -> CallToolResult:
        if self.mode == "error":
            raise RuntimeError(self.error_text)  # FastMCP turns it into isError: true
        actions = self.responder(envelope)
        if self.mode == "structured":
            doc = {"actions": actions}
            return CallToolResult(content=[TextContent(type="text", text=json.dumps(doc, ensure_ascii=False))],
                                  structuredContent=doc)
        if self.mode == "json_text":
            text = json.dumps({"actions": actions}, ensure_ascii=False)
        elif self.mode == "list_text":
            text = json.dumps(actions, ensure_ascii=False)
        else:
            replies = [a.get("content") or a.get("message") or "" for a in actions]
            text = " ".join(r for r in replies if r) or envelope_text(envelope)
        return CallToolResult(content=[TextContent(type="text", text=text)])


async def serve_forever(port: int = 0) -> None:  # pragma: no cover - manual use
    """``python -c 'import asyncio, simulators.fake_mcp as f; asyncio.run(f.serve_forever(8001))'``"""
    fake = FakeMcp()
    fake.port = port
    await fake.start()
    print(fake.url, flush=True)
    await asyncio.Event().wait()

