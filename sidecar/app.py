"""Provides create_app(config): the Sanic app factory. Nothing happens at import time."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from sanic import Request, Sanic
from sanic.exceptions import SanicException
from sanic.response import HTTPResponse, json

from sidecar.config import Config, secret_values
from sidecar.config.live import ConfigManager
from sidecar.crew.registry import CrewRegistry
from sidecar.http.routes import api
from sidecar.inbound.intake import WebhookIntake
from sidecar.inbound.journal_applier import DeliveryApplier
from sidecar.ops.health import HealthMonitor
from sidecar.ops.logs import REDACTOR, get_logger, log_event, setup_logging
from sidecar.ops.metrics import Metrics
from sidecar.ops.supervise import Supervisor
from sidecar.outbound.chatwoot import ChatwootClient
from sidecar.queue.worker import QueueWorker
from sidecar.services import BreakerBoard, ConfigHolder, Services
from state import StorageUnavailable, open_store
from state.writer import StateWriter

log = get_logger()
_METRICS_FLUSH_SECONDS = 1.0


@dataclass
class SidecarContext:
    """Everything the handlers need, built by the listeners (typed app.ctx)."""

    config: ConfigHolder
    config_path: str | None = None
    services: Services | None = None
    intake: WebhookIntake | None = None
    worker: QueueWorker | None = None
    background: list[asyncio.Task[Any]] = field(default_factory=list)
    health: HealthMonitor | None = None
    config_manager: ConfigManager | None = None
    supervisor: Supervisor | None = None
    started_at: float = field(default_factory=time.time)


def create_app(config: Config, *, config_path: str | None = None, name: str = "chatwoot_sidecar",
               log_to_stderr: bool = True) -> Sanic:
    """Builds the sidecar app for ``config`` (the file at ``config_path`` is watched for edits)."""
    app: Sanic = Sanic(name, ctx=SidecarContext(config=ConfigHolder(config), config_path=config_path))
    _apply_server_limits(app, config)
    app.config.ACCESS_LOG = False
    app.config.FALLBACK_ERROR_FORMAT = "json"
    app.config.GRACEFUL_SHUTDOWN_TIMEOUT = config.server.shutdown_grace_seconds
    app.config.NOISY_EXCEPTIONS = False
    app.blueprint(api)
    app.error_handler.add(SanicException, _json_error)
    app.error_handler.add(Exception, _json_error)

    setup_logging(config.logging.dir, level=config.logging.level, as_json=config.logging.json,
                  max_bytes=config.logging.max_bytes, backup_count=config.logging.backup_count,
                  secrets=secret_values(config), to_stderr=log_to_stderr)
    app.ctx.config.on_change(lambda old, new: REDACTOR.set_secrets(secret_values(new)))
    app.ctx.config.on_change(lambda old, new: _apply_server_limits(app, new))

    @app.before_server_start
    async def open_resources(app: Sanic) -> None:
        await _open(app)
        _attach_operator_surface(app.ctx)

    @app.after_server_start
    async def start_background(app: Sanic) -> None:
        ctx: SidecarContext = app.ctx
        assert ctx.services is not None
        assert ctx.intake is not None
        assert ctx.health is not None and ctx.config_manager is not None and ctx.supervisor is not None
        supervised = ctx.supervisor.keep_running
        services = ctx.services
        # Always on, also with workers disabled: the journal becomes conversation state and
        # queued work whether or not crews are being asked right now.
        applier = DeliveryApplier(services, ctx.intake.settings)
        ctx.background.append(asyncio.create_task(supervised("delivery-applier", applier.run),
                                                  name="delivery-applier"))
        if ctx.config.current.processing.workers_enabled:
            ctx.worker = QueueWorker(services)
            ctx.background.append(asyncio.create_task(supervised("queue-worker", ctx.worker.run),
                                                      name="queue-worker"))
        ctx.background.append(asyncio.create_task(
            supervised("metrics", lambda: _flush_metrics_forever(services)), name="metrics"))
        ctx.background.append(asyncio.create_task(ctx.health.run(), name="health-probes"))
        ctx.background.append(asyncio.create_task(ctx.config_manager.watch(), name="config-watcher"))
        cfg = ctx.config.current
        log_event(log, "sidecar.ready", host=cfg.server.host, port=cfg.server.port, pid=_pid())

    @app.before_server_stop
    async def stop_background(app: Sanic) -> None:
        ctx: SidecarContext = app.ctx
        grace = app.config.GRACEFUL_SHUTDOWN_TIMEOUT
        if ctx.worker is not None:
            # Leave Sanic a little of the same grace to close connections after the worker.
            await _bounded("worker", ctx.worker.stop(grace_seconds=max(grace - 2, grace * 0.75)), grace + 5)
        for task in ctx.background:
            task.cancel()
        for task in ctx.background:
            await _bounded(task.get_name(), task, 5)
        if ctx.services is not None:
            await _bounded("metrics flush", _flush_metrics(ctx.services), 5)

    @app.after_server_stop
    async def close_resources(app: Sanic) -> None:
        ctx: SidecarContext = app.ctx
        if ctx.services is not None:
            await ctx.services.crews.close()  # ends MCP sessions before the loop goes away
            await ctx.services.session.close()
            ctx.services.writer.close()
        log_event(log, "sidecar.stopped")

    return app


async def _bounded(step: str, awaitable: Any, seconds: float) -> None:
    """Runs one shutdown step; a step that hangs or fails is logged, never allowed to keep
    the process from exiting (leases left behind simply expire)."""
    try:
        await asyncio.wait_for(awaitable, seconds)
    except asyncio.CancelledError:
        pass
    except TimeoutError:
        log_event(log, "sidecar.shutdown_step_timed_out", level=30, step=step, seconds=seconds)
    except (StorageUnavailable, Exception) as exc:  # noqa: BLE001 - shutting down regardless
        log_event(log, "sidecar.shutdown_step_failed", level=30, step=step, error=type(exc).__name__)


def _apply_server_limits(app: Sanic, config: Config) -> None:
    # Sanic's defaults (100 MB bodies, 60 s timeouts) invite slow-body and memory abuse.
    app.config.REQUEST_MAX_SIZE = config.server.max_body_bytes
    app.config.REQUEST_TIMEOUT = config.server.request_timeout_seconds
    app.config.RESPONSE_TIMEOUT = max(30.0, config.server.request_timeout_seconds)
    app.config.KEEP_ALIVE_TIMEOUT = 5


async def _open(app: Sanic) -> None:
    ctx: SidecarContext = app.ctx
    config = ctx.config.current
    store = open_store(config.state.path, migrate=True)
    writer = StateWriter(store, reader=open_store(config.state.path, readonly=True))
    metrics = Metrics()
    metrics.load(await writer.call(store.load_metrics))
    # One session for every outbound call; redirects are never followed (see callers).
    session = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=60, sock_connect=5),
        connector=aiohttp.TCPConnector(limit=64, limit_per_host=16),
    )
    services = Services(
        config=ctx.config, writer=writer, session=session,
        chatwoot=ChatwootClient(session, ctx.config, metrics), crews=CrewRegistry(session),
        metrics=metrics, breakers=BreakerBoard(ctx.config),
    )
    known = await writer.call(store.get_kv, "chatwoot.self_user_ids")
    if isinstance(known, list):
        services.self_user_ids.update(x for x in known if isinstance(x, int))
    services.crews.refresh(config)
    ctx.services = services
    ctx.intake = WebhookIntake(services)


def _attach_operator_surface(ctx: SidecarContext) -> None:
    """Config manager (POST /config, file watcher), the background loops' supervisor and the
    health monitor (see their modules)."""
    assert ctx.services is not None
    manager = ConfigManager(ctx.services, ctx.config, ctx.config_path)
    supervisor = ctx.supervisor = Supervisor(ctx.services.metrics)
    ctx.health = HealthMonitor(ctx.services, warnings=lambda: [*manager.warnings(), *supervisor.warnings()],
                               config_problem=manager.problem, crashing=supervisor.recently_crashed)
    manager.listeners.append(ctx.health.probe_soon)  # new URLs or tokens: probe again now
    ctx.config_manager = manager


async def _flush_metrics(svc: Services) -> None:
    rows = svc.metrics.dirty_rows()
    stats = await svc.writer.call(svc.writer.store.queue_stats)
    svc.metrics.set_gauge("connector_queue_depth", stats.depth)
    svc.metrics.set_gauge("connector_dead_letters", stats.dead)
    if rows:
        await svc.writer.call(svc.writer.store.save_metrics, rows)
    ids = sorted(svc.self_user_ids)
    if ids:
        await svc.writer.call(svc.writer.store.put_kv, "chatwoot.self_user_ids", ids)


async def _flush_metrics_forever(svc: Services) -> None:
    while True:
        await asyncio.sleep(_METRICS_FLUSH_SECONDS)
        try:
            await _flush_metrics(svc)
        except StorageUnavailable as exc:
            log_event(log, "metrics.flush_failed", level=30, error=str(exc))


async def _json_error(request: Request, exception: Exception) -> HTTPResponse:
    """Every error answers JSON with a clear reason; never a traceback."""
    status = getattr(exception, "status_code", 500) if isinstance(exception, SanicException) else 500
    if status >= 500:
        log.error("unhandled error on %s %s: %s", request.method, request.path, type(exception).__name__,
                  exc_info=exception)
        message = "internal error"
    else:
        message = str(exception) or type(exception).__name__
    if status == 413:
        message = "request body too large"
    return json({"status": "rejected", "error": message}, status=status)


def _pid() -> int:
    import os

    return os.getpid()
