"""Provides the start and stop shared by the simulators: an aiohttp app on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import aiohttp
from aiohttp import web


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serves ``app`` on a free loopback port; returns its runner and base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def shut_down(tasks: Iterable[asyncio.Task[Any]], session: aiohttp.ClientSession | None,
                    runner: web.AppRunner | None) -> None:
    """Cancels the simulator's own tasks, then closes its client session and its server."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    if session:
        await session.close()
    if runner:
        await runner.cleanup()
