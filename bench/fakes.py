"""Runs the benchmark's fakes in their own process: Chatwoot's REST API and MCP-Crew.

Both are minimal aiohttp apps. The test simulators (FakeChatwoot, FakeCrew) record every request
and notify waiters, which is right for tests but would itself be the bottleneck at hundreds of
messages per second and grow without bound over 100,000 messages.

- Chatwoot answers message creates at once and records, per reply, the receive time and the
  customer message ids the reply answers (the crew writes them into the reply text), so the
  driver can compute webhook-to-reply latency and count replies per message.
- MCP-Crew answers ``connector-v1`` (``POST /crew``) and the seed's ``chatwootai`` dialect
  (``POST /chatwootai``, used by bench/ancestor.py) after ``latency`` seconds. It honours
  ``Idempotency-Key`` like a real idempotent service: a key already answered gets the stored
  answer, and a key still being worked on joins that work, so ``work`` counts what the crew
  actually paid for. It keeps the peak of requests in flight.

Control (``control`` URL): ``POST /_bench/crew?hang=1`` (every later crew request hangs),
``POST /_bench/crew?latency=2.5``, ``GET /_bench/crew`` (figures), ``POST /_bench/crew?reset=1``.

Prints one line ``FAKES_READY {"chatwoot": url, "crew": url, "control": url}`` when all listen.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import sys
import time
from typing import Any

from aiohttp import web

TOKEN = "bench-chatwoot-token"
CREW_KEY = "bench-crew-key"
_IDS = re.compile(r"ids=([0-9,]+)")
_KEEP_ANSWERS = 200_000


def reply_text(ids: list[Any]) -> str:
    return f"Obrigado! (bench ids={','.join(str(i) for i in ids)})"


class MiniChatwoot:
    def __init__(self) -> None:
        self.replies: list[tuple[float, list[int], int]] = []
        """(receive time, customer message ids named in the text, conversation id) per reply."""
        self.next_id = 5_000_000
        self.calls = 0

    def app(self) -> web.Application:
        app = web.Application()
        prefix = "/api/v1/accounts/{account_id}/conversations/{conversation_id}"
        app.add_routes([
            web.post(prefix + "/messages", self.create_message),
            web.post(prefix + "/{action}", self.ok),
            web.get(prefix + "/{action}", self.ok),
            web.get("/api/v1/profile", self.profile),
            web.get("/_bench/replies", self.take_replies),
        ])
        return app

    async def create_message(self, request: web.Request) -> web.Response:
        at = time.time()
        self.calls += 1
        if request.headers.get("api_access_token") != TOKEN:
            return web.json_response({"error": "Invalid Access Token"}, status=401)
        body = await request.json()
        content = str(body.get("content") or "")
        match = _IDS.search(content)
        ids = [int(x) for x in match.group(1).split(",") if x] if match else []
        if not body.get("private"):
            self.replies.append((at, ids, int(request.match_info["conversation_id"])))
        self.next_id += 1
        return web.json_response({"id": self.next_id, "content": content, "message_type": 1,
                                  "private": bool(body.get("private")), "created_at": int(at)})

    async def profile(self, request: web.Request) -> web.Response:
        """The sidecar's health probe: checks the token as Chatwoot does (a user token's answer)."""
        self.calls += 1
        if request.headers.get("api_access_token") != TOKEN:
            return web.json_response({"error": "Invalid Access Token"}, status=401)
        return web.json_response({"id": 1, "type": "User"})

    async def ok(self, request: web.Request) -> web.Response:
        self.calls += 1
        return web.json_response({})

    async def take_replies(self, request: web.Request) -> web.Response:
        replies, self.replies = self.replies, []
        return web.json_response({"replies": replies, "calls": self.calls})


class MiniCrew:
    def __init__(self) -> None:
        self.latency = 0.0
        self.hang = False
        self.requests = 0
        self.work = 0
        """Answers the crew computed (a replay or a join of the same key is not work)."""
        self.replays = 0
        self.joins = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._answers: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._stopping = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes([web.post("/crew", self.crew), web.post("/chatwootai", self.chatwootai),
                        web.get("/crew", self.probe)])
        return app

    def control_app(self) -> web.Application:
        app = web.Application()
        app.add_routes([web.post("/_bench/crew", self.control), web.get("/_bench/crew", self.figures)])
        return app

    async def probe(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _answer(self, key: str, ids: list[Any]) -> dict[str, Any]:
        """The crew's work for one request key; concurrent or later requests with the key share it."""
        known = self._answers.get(key) if key else None
        if known is not None:
            if known.done():
                self.replays += 1
            else:
                self.joins += 1
            return await asyncio.shield(known)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        if key:
            self._answers[key] = future
            if len(self._answers) > _KEEP_ANSWERS:
                for old in list(self._answers)[: _KEEP_ANSWERS // 10]:
                    del self._answers[old]
        self.work += 1
        if self.hang:
            await self._stopping.wait()
        elif self.latency:
            await asyncio.sleep(self.latency)
        answer = {"ids": ids}
        future.set_result(answer)
        return answer

    async def _serve(self, request: web.Request, key: str, ids: list[Any]) -> dict[str, Any]:
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(key, ids)
        finally:
            self.in_flight -= 1

    async def crew(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {CREW_KEY}":
            return web.json_response({"error": "unauthorized"}, status=401)
        envelope = await request.json()
        ids = [m.get("id") for m in envelope.get("messages") or [] if isinstance(m, dict)]
        key = request.headers.get("Idempotency-Key") or str(envelope.get("request_id") or "")
        answer = await self._serve(request, key, ids)
        return web.json_response({"actions": [{"type": "reply", "content": reply_text(answer["ids"])}]})

    async def chatwootai(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {CREW_KEY}":
            return web.json_response({"error": "unauthorized"}, status=401)
        body = await request.json()
        data = body.get("data") or {}
        answer = await self._serve(request, "", [data.get("message_id")])
        return web.json_response({"auto_reply": True, "reply_content": reply_text(answer["ids"])})

    async def control(self, request: web.Request) -> web.Response:
        if request.query.get("hang") == "1":
            self.hang = True
        if "latency" in request.query:
            self.latency = float(request.query["latency"])
        if request.query.get("reset") == "1":
            self.requests = self.work = self.replays = self.joins = self.max_in_flight = 0
        return await self.figures(request)

    async def figures(self, request: web.Request) -> web.Response:
        return web.json_response({"hang": self.hang, "latency": self.latency, "requests": self.requests,
                                  "work": self.work, "replays": self.replays, "joins": self.joins,
                                  "in_flight": self.in_flight, "max_in_flight": self.max_in_flight})

    def stop(self) -> None:
        self._stopping.set()


async def _serve_app(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, backlog=4096).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def main_async(args: argparse.Namespace) -> None:
    chatwoot, crew = MiniChatwoot(), MiniCrew()
    crew.latency = args.crew_latency
    runners = []
    urls = {}
    for name, app in (("chatwoot", chatwoot.app()), ("crew_base", crew.app()), ("control", crew.control_app())):
        runner, url = await _serve_app(app)
        runners.append(runner)
        urls[name] = url
    urls["crew"] = urls["crew_base"] + "/crew"
    urls["chatwootai"] = urls["crew_base"] + "/chatwootai"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("FAKES_READY " + json.dumps(urls), flush=True)
    await stop.wait()
    crew.stop()
    for runner in runners:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crew-latency", type=float, default=0.0, help="seconds each crew answer takes")
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.run(main_async(args))
    except ImportError:
        asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
