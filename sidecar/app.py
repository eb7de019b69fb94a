"""Provides create_app(config): the Sanic app factory. Nothing happens at import time."""

from __future__ import annotations

import os
from dataclasses import dataclass

from sanic import Sanic
from sanic.exceptions import SanicException

from sidecar.config import Config, secret_values
from sidecar.http.errors import render as render_error
from sidecar.http.routes import api
from sidecar.ops.logs import REDACTOR, get_logger, log_event, setup_logging
from sidecar.runtime import Runtime

log = get_logger()


@dataclass
class SidecarContext:
    """What the handlers reach through ``request.app.ctx`` (typed app.ctx)."""

    runtime: Runtime
    owns_runtime: bool
    """False when a caller (a test) built the runtime and starts and stops it itself."""


def create_app(config: Config, *, config_path: str | None = None, name: str = "chatwoot_sidecar",
               log_to_stderr: bool = True, log_to_file: bool = True, runtime: Runtime | None = None,
               role: str = "all") -> Sanic:
    """Builds the sidecar app for ``config`` (the file at ``config_path`` is watched for edits).

    Args:
        runtime: an already built (and started) runtime; the app then never starts or stops it,
            which is what in-process tests want (sanic-testing runs the server's start and stop
            events around every request).
        role: ``all`` (one process does everything), ``intake`` (HTTP only) or ``worker``.
    """
    owned = runtime is None
    rt = runtime or Runtime(config, config_path=config_path, role=role)
    app: Sanic = Sanic(name, ctx=SidecarContext(runtime=rt, owns_runtime=owned))
    _apply_server_limits(app, config)
    app.config.ACCESS_LOG = False
    app.config.FALLBACK_ERROR_FORMAT = "json"
    app.config.GRACEFUL_SHUTDOWN_TIMEOUT = config.server.shutdown_grace_seconds
    app.config.NOISY_EXCEPTIONS = False
    app.blueprint(api)
    app.error_handler.add(SanicException, render_error)
    app.error_handler.add(Exception, render_error)

    if owned:
        setup_logging(config.logging.dir, level=config.logging.level, as_json=config.logging.json,
                      max_bytes=config.logging.max_bytes, backup_count=config.logging.backup_count,
                      secrets=secret_values(config), to_stderr=log_to_stderr, to_file=log_to_file)
    rt.config.on_change(lambda old, new: REDACTOR.set_secrets(secret_values(new)))
    rt.config.on_change(lambda old, new: _apply_server_limits(app, new))

    if owned:
        @app.before_server_start
        async def open_runtime(app: Sanic) -> None:
            await app.ctx.runtime.open()

        @app.after_server_start
        async def start_runtime(app: Sanic) -> None:
            runtime: Runtime = app.ctx.runtime
            await runtime.start()
            cfg = runtime.config.current
            # A child of the multi-process mode reports to its parent, which says "ready" for all.
            event = "sidecar.ready" if runtime.role == "all" else "sidecar.process_ready"
            log_event(log, event, host=cfg.server.host, port=cfg.server.port, pid=os.getpid(), role=runtime.role)

        @app.before_server_stop
        async def stop_runtime(app: Sanic) -> None:
            await app.ctx.runtime.stop(app.config.GRACEFUL_SHUTDOWN_TIMEOUT)

        @app.after_server_stop
        async def close_runtime(app: Sanic) -> None:
            await app.ctx.runtime.close()
            log_event(log, "sidecar.stopped")

    return app


def _apply_server_limits(app: Sanic, config: Config) -> None:
    # Sanic's defaults (100 MB bodies, 60 s timeouts) invite slow-body and memory abuse.
    app.config.REQUEST_MAX_SIZE = config.server.max_body_bytes
    app.config.REQUEST_TIMEOUT = config.server.request_timeout_seconds
    app.config.RESPONSE_TIMEOUT = max(30.0, config.server.request_timeout_seconds)
    app.config.KEEP_ALIVE_TIMEOUT = 5
