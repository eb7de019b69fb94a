"""Provides what the simulator tests share: the reference samples and a webhook receiver."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiohttp import web

from simulators.loopback import serve, shut_down
from simulators.signing import verify

REF = Path("/work/shared/reference/chatwoot-payloads")


def load(name: str) -> Any:
    return json.loads((REF / name).read_text(encoding="utf-8"))


def shape(obj: Any) -> Any:
    """Keys (in order) all the way down; list shape taken from the first element."""
    if isinstance(obj, dict):
        return [(k, shape(v)) for k, v in obj.items()]
    if isinstance(obj, list):
        return [shape(obj[0])] if obj else []
    return None


class Receiver:
    """A tiny webhook receiver that checks Chatwoot's signature like a sidecar would."""

    def __init__(self, secret: str | None = None, api_key: str | None = None) -> None:
        self.secret = secret
        self.api_key = api_key
        self.received: list[dict[str, Any]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        headers = dict(request.headers)
        valid = True
        if self.secret:
            ts, sig = headers.get("X-Chatwoot-Timestamp"), headers.get("X-Chatwoot-Signature")
            valid = bool(ts and sig and verify(raw, self.secret, ts, sig))
        if self.api_key:
            valid = headers.get("Authorization") == f"Bearer {self.api_key}"
        self.received.append({"headers": headers, "raw": raw, "json": json.loads(raw), "valid": valid})
        if not valid:
            return web.json_response({"error": "bad signature"}, status=401)
        return web.json_response({"status": "accepted"})

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self._runner, base = await serve(app)
        self.url = f"{base}/hook"
        return self

    async def stop(self) -> None:
        await shut_down((), None, self._runner)
