"""Provides GET /webhook/status: intake figures for operators (no secrets, no bodies).

Counts come from the persisted ``connector_webhooks_received_total`` counters, so they survive
restarts; the last rejection is kept in memory (since this process started).
"""

from __future__ import annotations

import time
from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from sidecar.http.routes.metrics import snapshot
from sidecar.runtime import Runtime
from state import StateError, Tx

bp = Blueprint("webhook_status")

OUTCOMES = ("accepted", "ignored", "duplicate", "failed", "rejected_signature", "rejected_malformed")
_COUNTER = "connector_webhooks_received_total"


@bp.get("/webhook/status")
async def webhook_status(request: Request) -> HTTPResponse:
    runtime: Runtime = request.app.ctx.runtime
    intake = runtime.intake
    snap = await snapshot(runtime)
    counts: dict[str, int] = {o: int(snap.counter_total(_COUNTER, outcome=o)) for o in OUTCOMES}
    unavailable = int(snap.counter_total(_COUNTER, outcome="storage_unavailable"))
    queue: dict[str, Any]
    last_at = intake.last_delivery_at

    def read(tx: Tx) -> tuple[Any, Any, float | None]:
        now = time.time()
        return tx.jobs.stats(now), tx.journal.backlog(now), tx.journal.last_received_at()

    try:
        stats, backlog, stored_last = await runtime.state.read(read)
        if last_at is None:  # after a restart: the newest stored delivery
            last_at = stored_last
        queue = {"depth": stats.depth, "pending": stats.pending, "in_flight": stats.in_flight,
                 "waiting": stats.waiting, "dead_letters": stats.dead,
                 "oldest_pending_age": stats.oldest_pending_age,
                 # Acknowledged deliveries the applier has not turned into state and work yet.
                 "unapplied": backlog.unapplied,
                 "oldest_unapplied_age": round(backlog.oldest_age, 3) if backlog.oldest_age is not None else None}
    except StateError:
        queue = {"depth": None, "error": "storage unavailable"}
    now = time.time()
    rejection = intake.last_rejection
    return json({
        "last_delivery_at": last_at,
        "last_delivery_age_seconds": round(now - last_at, 3) if last_at is not None else None,
        "counts": counts,
        "signature_failures": counts["rejected_signature"],
        "storage_unavailable": unavailable,
        "queue": queue,
        # Only our own reason text and the delivery id: never the body or a header value.
        "last_rejection": None if rejection is None else {
            "at": rejection["at"], "status": rejection["status"], "outcome": rejection["outcome"],
            "reason": rejection["reason"], "delivery_id": rejection.get("delivery_id")},
    })
