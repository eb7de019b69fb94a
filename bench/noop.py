"""Runs the sidecar with one extra endpoint, ``POST /bench/noop``: the benchmarks' baseline.

Every intake target of the benchmark is a ratio against "a no-op endpoint of the same server",
so the baseline must run in the very same Sanic app, worker and event loop as
``/webhook/chatwoot``: same HTTP parsing, same middleware, same process pinning. An aiohttp
stub next to it would measure another server. The production app never has this route: only
this benchmark entry point adds it.

    python -m bench.noop --config bench-config.yaml     # like python -m sidecar --config ...
"""

from __future__ import annotations

import sys

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

bp = Blueprint("bench", url_prefix="/bench")


@bp.post("/noop")
async def noop(request: Request) -> HTTPResponse:
    # Reads the body like the intake does (Sanic has already buffered it), does nothing else.
    _ = request.body
    return json({"ok": True})


def main(argv: list[str] | None = None) -> int:
    from sidecar.__main__ import main as sidecar_main

    return sidecar_main(argv, extra_blueprints=(bp,))


if __name__ == "__main__":
    sys.exit(main())
