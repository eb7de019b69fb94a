"""Provides POST /bench/noop: the benchmark's baseline endpoint (never in production).

Why it exists: every intake target of the benchmark (bench/, issue 7) is a ratio against "a
no-op endpoint of the same server", so the baseline must run in the very same Sanic app,
worker and event loop as ``/webhook/chatwoot``: same HTTP parsing, same middleware, same
process pinning. An aiohttp stub next to it would measure another server.

Why it is gated: an unauthenticated endpoint has no place on a production listener, so
``create_app`` registers this blueprint only when ``SIDECAR_BENCH_NOOP=1`` is set in the
environment (``bench/run.py`` sets it for the sidecars it starts; nothing else does).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

ENV_FLAG = "SIDECAR_BENCH_NOOP"

bp = Blueprint("bench", url_prefix="/bench")


@bp.post("/noop")
async def noop(request: Request) -> HTTPResponse:
    # Reads the body like the intake does (Sanic has already buffered it), does nothing else.
    _ = request.body
    return json({"ok": True})


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    """True when the process was started for a benchmark (``SIDECAR_BENCH_NOOP=1``)."""
    return (environ if environ is not None else os.environ).get(ENV_FLAG) == "1"
