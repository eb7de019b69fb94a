"""Runs the instant fakes for the benchmark in their own process: Chatwoot's REST API and MCP-Crew.

- Chatwoot: a minimal aiohttp app (FakeChatwoot keeps every request and checks per-conversation
  rate limits, which is right for tests but would itself be the bottleneck and grow without bound
  over 100,000 messages). It answers message creates at once and records, per reply, the receive
  time and the customer message ids the reply answers (the crew responder below writes them
  into the reply text), so the driver can compute webhook-to-reply latency.
- MCP-Crew: the project's ``FakeCrew`` with a responder that answers at once; its request logs
  are trimmed every second so a long run stays flat. ``POST /_bench/crew?hang=1`` makes every
  following crew request hang (``FakeCrew.hang_next``).

Prints one line ``FAKES_READY {"chatwoot": url, "crew": url}`` when both listen.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import sys
import time
from typing import Any

from aiohttp import web

from sidecar.simulators import FakeCrew

TOKEN = "bench-chatwoot-token"
CREW_KEY = "bench-crew-key"
_IDS = re.compile(r"ids=([0-9,]+)")


def responder(envelope: dict[str, Any]) -> list[dict[str, Any]]:
    ids = [str(m.get("id")) for m in envelope.get("messages") or [] if isinstance(m, dict)]
    return [{"type": "reply", "content": f"Obrigado! (bench ids={','.join(ids)})"}]


class MiniChatwoot:
    def __init__(self) -> None:
        self.replies: list[tuple[float, list[int]]] = []
        self.next_id = 5_000_000
        self.calls = 0

    def app(self) -> web.Application:
        app = web.Application()
        prefix = "/api/v1/accounts/{account_id}/conversations/{conversation_id}"
        app.add_routes([
            web.post(prefix + "/messages", self.create_message),
            web.post(prefix + "/{action}", self.ok),
            web.get(prefix + "/{action}", self.ok),
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
        if match:
            self.replies.append((at, [int(x) for x in match.group(1).split(",") if x]))
        self.next_id += 1
        return web.json_response({"id": self.next_id, "content": content, "message_type": 1,
                                  "private": bool(body.get("private")), "created_at": int(at)})

    async def ok(self, request: web.Request) -> web.Response:
        self.calls += 1
        return web.json_response({})

    async def take_replies(self, request: web.Request) -> web.Response:
        replies, self.replies = self.replies, []
        return web.json_response({"replies": replies, "calls": self.calls})


async def main_async(args: argparse.Namespace) -> None:
    chatwoot = MiniChatwoot()
    runner = web.AppRunner(chatwoot.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    cw_host, cw_port = runner.addresses[0][:2]

    crew = FakeCrew(api_key=CREW_KEY)
    crew.responder = responder
    await crew.start()

    async def hang(request: web.Request) -> web.Response:
        if request.query.get("hang") == "1":
            crew.hang_next(10**9)
        return web.json_response({"hang": crew._hang > 0})  # noqa: SLF001 - bench-only peek

    control = web.Application()
    control.add_routes([web.post("/_bench/crew", hang)])
    control_runner = web.AppRunner(control, access_log=None)
    await control_runner.setup()
    await web.TCPSite(control_runner, "127.0.0.1", 0).start()
    ctl_host, ctl_port = control_runner.addresses[0][:2]

    async def trim() -> None:
        while True:
            await asyncio.sleep(1.0)
            crew.requests.clear()
            crew.answers.clear()
            crew._keys.clear()  # noqa: SLF001 - keeps a 100k-message run flat

    trimmer = asyncio.create_task(trim())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("FAKES_READY " + json.dumps({"chatwoot": f"http://{cw_host}:{cw_port}", "crew": crew.crew_url,
                                       "control": f"http://{ctl_host}:{ctl_port}"}), flush=True)
    await stop.wait()
    trimmer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await trimmer
    await crew.stop()
    await control_runner.cleanup()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.run(main_async(args))
    except ImportError:
        asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
