"""Provides GET /metrics: Prometheus text, or JSON (``Accept: application/json``/``?format=json``).

Counters and histograms are the stored totals of every sidecar process plus this process's
increments not flushed yet; gauges (queue depth, dead letters, crew calls in flight) are read now.
"""

from __future__ import annotations

import time
from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json, text

from sidecar.ops.health import crew_calls
from sidecar.ops.metrics import Snapshot
from sidecar.ops.retention import read_storage
from sidecar.runtime import Runtime
from state import StateError, Tx

bp = Blueprint("metrics")

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _wants_json(request: Request) -> bool:
    if request.args.get("format") == "json":
        return True
    return "application/json" in request.headers.get("accept", "")


async def snapshot(runtime: Runtime) -> Snapshot:
    """Every figure as exposed (also used by /webhook/status).

    Read under the process's metrics lock, which a flush holds from taking its increments until
    its commit: otherwise a flush committing in between would show its increments twice or not
    at all (a counter going down). Works the same on every back-end.
    """
    def read(tx: Tx) -> tuple[Any, Any, Any]:
        now = time.time()
        return tx.metrics.totals(), tx.jobs.stats(now), tx.processes.live(now)

    async with runtime.metrics_lock:
        try:
            totals, stats, processes = await runtime.state.read(read)
        except StateError:
            return runtime.metrics.snapshot([])
        snap = runtime.metrics.snapshot(totals)
    snap.gauges[("connector_queue_depth", ())] = stats.depth
    snap.gauges[("connector_dead_letters", ())] = stats.dead
    config = runtime.config.current
    for name, figures in crew_calls(processes).items():
        snap.gauges[("connector_crew_in_flight", (("backend", name),))] = figures["in_flight"]
    runtime.crews.refresh(config)
    for name in runtime.crews.all_backends():
        crew = config.crew(name)
        limit = crew.max_in_flight if crew is not None else config.mcp_crew.max_in_flight
        snap.gauges[("connector_crew_in_flight_limit", (("backend", name),))] = limit
        snap.gauges.setdefault(("connector_crew_in_flight", (("backend", name),)), 0)
    await _storage_gauges(runtime, snap)
    return snap


async def _storage_gauges(runtime: Runtime, snap: Snapshot) -> None:
    """The state's size, its oldest rows and the latest retention pass (read now)."""
    try:
        figures, oldest, last = await read_storage(runtime.state)
    except StateError:
        return
    snap.gauges[("connector_database_size_bytes", ())] = figures.file_bytes
    snap.gauges[("connector_database_wal_bytes", ())] = figures.wal_bytes
    snap.gauges[("connector_database_reusable_bytes", ())] = figures.reusable_bytes
    for kind, at in oldest.by_kind.items():
        if at is not None:
            snap.gauges[("connector_oldest_row_timestamp_seconds", (("kind", kind),))] = at
    if last and isinstance(last.get("at"), int | float):
        snap.gauges[("connector_retention_last_pass_timestamp_seconds", ())] = last["at"] + last.get("seconds", 0)


@bp.get("/metrics")
async def metrics(request: Request) -> HTTPResponse:
    snap = await snapshot(request.app.ctx.runtime)
    if _wants_json(request):
        return json(snap.to_json())
    return text(snap.render_prometheus(), content_type=PROMETHEUS_CONTENT_TYPE)
