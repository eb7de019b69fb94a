"""Provides how one process of the sidecar serves: HTTP (roles ``all``, ``intake``) or the queue
alone (role ``worker``, in the multi-process mode: sidecar.processes)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from typing import Any

from sidecar.config import Config, secret_values
from sidecar.ops.logs import get_logger, log_event, setup_logging
from sidecar.processes import READY_MARK
from sidecar.runtime import Runtime

log = get_logger()


def serve_http(config: Config, listener: socket.socket, *, role: str = "all",
               extra_blueprints: tuple[Any, ...] = ()) -> int:
    """Sanic on ``listener`` (bound by the caller, so nothing can take the port in between)."""
    from sidecar.app import create_app

    app = create_app(config, config_path=config.source_path, role=role, log_to_file=role == "all")
    for blueprint in extra_blueprints:
        app.blueprint(blueprint)
    app.run(sock=listener, single_process=True, access_log=False, motd=False)
    return 0


def serve_worker(config: Config) -> int:
    """The queue alone: journal applier, queue worker, health probes, metrics; until SIGTERM."""
    logging_config = config.logging
    setup_logging(logging_config.dir, level=logging_config.level, as_json=logging_config.json,
                  max_bytes=logging_config.max_bytes, backup_count=logging_config.backup_count,
                  secrets=secret_values(config), to_file=False)
    try:
        import uvloop

        return uvloop.run(_worker(config))
    except ImportError:
        return asyncio.run(_worker(config))


async def _worker(config: Config) -> int:
    runtime = Runtime(config, config_path=config.source_path, role="worker")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await runtime.open()
    try:
        await runtime.start()
        log_event(log, READY_MARK, role="worker", pid=os.getpid())
        await stop.wait()
        await runtime.stop(config.server.shutdown_grace_seconds)
    finally:
        with contextlib.suppress(Exception):
            await runtime.close()
        log_event(log, "sidecar.process_stopped", role="worker", pid=os.getpid())
    return 0
