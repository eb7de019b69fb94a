"""A fake CrewAI AMP deployment (reference B1): ``/inputs``, ``/kickoff``, ``/status/{id}``.

A real aiohttp server on 127.0.0.1. Knobs:

* ``polls_before_done``: a run answers "running" to that many status reads, then completes;
* ``shape``: ``status`` (running/completed/error, ``result.output``) or ``state``
  (STARTED/SUCCESS/FAILED, ``result`` as a string), the two shapes seen in the wild;
* ``legacy_path``: only ``GET /{id}/status`` exists (``/status/{id}`` answers 404);
* ``callback``: runs finish only after ``callback_delay`` seconds, then the fake POSTs the
  kickoff's ``crewWebhookUrl`` (status reads say "running" until then);
* ``required_inputs``: kickoffs missing one of these inputs get AMP's 422;
* ``kickoff_status``: answer kickoffs with this HTTP status instead (401, 500, …);
* ``never_finish``: runs stay running forever; ``run_fails``: runs end in error;
* ``output``: ``json`` (a reply document, as a JSON string) or ``text`` (plain text).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
from aiohttp import web

from simulators.loopback import serve, shut_down

from .fake_crew import default_responder

__all__ = ["FakeAmp", "AmpRun"]


@dataclass
class AmpRun:
    kickoff_id: str
    body: dict[str, Any]
    headers: dict[str, str]
    polls: int = 0
    done: bool = False
    callback_status: int | None = None
    created_at: float = field(default_factory=time.time)


class FakeAmp:
    """``async with FakeAmp() as amp:`` then point a crew at ``amp.url``."""

    def __init__(self, *, token: str = "amp-test-token") -> None:
        self.token = token
        self.url = ""
        self.polls_before_done = 1
        self.shape: Literal["status", "state"] = "status"
        self.legacy_path = False
        self.callback = False
        self.callback_delay = 0.2
        self.required_inputs: list[str] = ["message", "channel", "conversation_id"]
        self.kickoff_status: int | None = None
        self.never_finish = False
        self.run_fails = False
        self.output: Literal["json", "text"] = "json"
        self.responder: Callable[[dict[str, Any]], list[dict[str, Any]]] = default_responder
        self.runs: dict[str, AmpRun] = {}
        self.status_reads: list[str] = []  # paths read, in order
        self.kickoff_requests = 0  # every POST /kickoff, refused ones included
        self.unauthorized = 0
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> FakeAmp:
        app = web.Application()
        app.add_routes([
            web.get("/inputs", self._inputs),
            web.post("/kickoff", self._kickoff),
            web.get("/status/{kickoff_id}", self._status_new),
            web.get("/{kickoff_id}/status", self._status_old),
        ])
        self._runner, self.url = await serve(app)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return self

    async def stop(self) -> None:
        await shut_down(self._tasks, self._session, self._runner)

    async def __aenter__(self) -> FakeAmp:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------------------ waiting
    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        async def until() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        await asyncio.wait_for(until(), timeout)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # ------------------------------------------------------------------------------ handlers
    def _authorized(self, request: web.Request) -> bool:
        if not self.token:
            return True
        if request.headers.get("Authorization") == f"Bearer {self.token}":
            return True
        self.unauthorized += 1
        return False

    @staticmethod
    def _unauthorized() -> web.Response:
        return web.json_response({"error": "Unauthorized", "message": "Invalid or missing bearer token"},
                                 status=401)

    async def _inputs(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        return web.json_response({"inputs": list(self.required_inputs)})

    async def _kickoff(self, request: web.Request) -> web.Response:
        self.kickoff_requests += 1
        if not self._authorized(request):
            return self._unauthorized()
        if self.kickoff_status is not None:
            return web.json_response({"error": "fault", "message": "injected"}, status=self.kickoff_status)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "Bad Request", "message": "body is not JSON"}, status=400)
        inputs = body.get("inputs") if isinstance(body, dict) else None
        if not isinstance(inputs, dict) or not all(isinstance(v, str) for v in inputs.values()):
            return web.json_response({"error": "Validation Error", "message": "inputs must map to strings"},
                                     status=422)
        missing = [name for name in self.required_inputs if name not in inputs]
        if missing:
            return web.json_response({"error": "Validation Error", "message": "Missing required inputs",
                                      "details": {"missing_inputs": missing}}, status=422)
        run = AmpRun(str(uuid.uuid4()), body, dict(request.headers))
        self.runs[run.kickoff_id] = run
        if self.callback and isinstance(body.get("crewWebhookUrl"), str):
            task = asyncio.create_task(self._finish_and_call_back(run, body["crewWebhookUrl"]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await self._notify()
        return web.json_response({"kickoff_id": run.kickoff_id})

    async def _finish_and_call_back(self, run: AmpRun, url: str) -> None:
        await asyncio.sleep(self.callback_delay)  # the simulated crew's working time
        run.done = True
        assert self._session is not None
        payload = {"kickoff_id": run.kickoff_id, "state": "SUCCESS", "meta": run.body.get("meta")}
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with self._session.post(url, json=payload) as resp:
                run.callback_status = resp.status
        await self._notify()

    async def _status_new(self, request: web.Request) -> web.Response:
        if self.legacy_path:
            self.status_reads.append(f"/status/{request.match_info['kickoff_id']}")
            return web.json_response({"error": "Not Found"}, status=404)
        return await self._status(request, f"/status/{request.match_info['kickoff_id']}")

    async def _status_old(self, request: web.Request) -> web.Response:
        return await self._status(request, f"/{request.match_info['kickoff_id']}/status")

    async def _status(self, request: web.Request, path: str) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        self.status_reads.append(path)
        run = self.runs.get(request.match_info["kickoff_id"])
        if run is None:
            return web.json_response({"error": "Execution not found"}, status=404)
        run.polls += 1
        await self._notify()
        finished = run.done if self.callback else run.polls > self.polls_before_done
        if self.never_finish or not finished:
            if self.shape == "state":
                return web.json_response({"state": "STARTED", "status": "STARTED"})
            return web.json_response({"status": "running", "current_task": "answer_task",
                                      "progress": {"completed_tasks": 0, "total_tasks": 1}})
        if self.run_fails:
            if self.shape == "state":
                return web.json_response({"state": "FAILED", "result": "LLM quota exceeded"})
            return web.json_response({"status": "error", "error": "LLM quota exceeded", "execution_time": 1.2})
        output = self._output(run)
        if self.shape == "state":
            return web.json_response({"state": "SUCCESS", "result": output})
        return web.json_response({"status": "completed", "execution_time": 3.4,
                                  "result": {"output": output, "tasks": [
                                      {"task_id": "answer_task", "output": output, "agent": "Support",
                                       "execution_time": 3.4}]}})

    def _output(self, run: AmpRun) -> str:
        inputs = run.body["inputs"]
        context = json.loads(inputs.get("context_json") or "{}")
        envelope = {"messages": [{"content": inputs.get("message", "")}], "crew": context.get("crew") or ""}
        actions = self.responder(envelope)
        if self.output == "json":
            return json.dumps({"actions": actions}, ensure_ascii=False)
        return " ".join(str(a.get("content") or a.get("message") or "") for a in actions).strip()
