"""Provides the delivery applier: turns journaled deliveries into conversation state and work.

The webhook is answered as soon as its raw delivery is committed (see webhook_intake); this
loop then applies the journal in arrival order, a batch per transaction (conversation
snapshot, message, ownership, queued job), reports each delivery's final outcome in the log
and the metrics, and wakes the queue worker. Pending rows survive a crash and are applied
on the next start, before anything newer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from sidecar.inbound.apply import Applied, IntakeSettings, apply_pending
from sidecar.inbound.payload import event_label
from sidecar.ops.logs import REDACTOR, get_logger, log_event
from sidecar.queue.pacing import SATURATED_SHARE
from sidecar.services import Services
from state import StorageUnavailable, Tx

log = get_logger()
_STORAGE_RETRY_SECONDS = 1.0
_IDLE_SECONDS = 1.0
BATCH = 16
"""Deliveries applied per transaction: large enough to amortise the commit, small enough
that acknowledgements queued behind the batch wait only a few milliseconds."""


class DeliveryApplier:
    def __init__(self, services: Services, settings: Callable[[], IntakeSettings]) -> None:
        self.svc = services
        self._settings = settings

    async def run(self) -> None:
        """Runs until cancelled (at shutdown); a batch in flight still commits or rolls back whole."""
        while True:
            try:
                applied, cpu_seconds = await self.svc.writer.transact(_timed_apply, self._settings(), BATCH)
            except StorageUnavailable as exc:
                self.svc.journal_problem = REDACTOR.redact(str(exc))  # shown by /health
                log_event(log, "webhook.apply_storage_unavailable", level=40, error=str(exc))
                await self._idle(_STORAGE_RETRY_SECONDS)
                continue
            self.svc.journal_problem = None
            self._report(applied)
            if applied and self.svc.saturated():
                # A deliberate pause, not a wait for an event: it hands the core back to the
                # webhooks for seven times what the batch took (rows pile up meanwhile, so
                # the next batch is fuller and cheaper per row).
                await asyncio.sleep(yield_seconds(cpu_seconds))
            if len(applied) < BATCH:
                await self._idle(_IDLE_SECONDS)

    async def _idle(self, seconds: float) -> None:
        wake = self.svc.journal_wake
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await wake.wait()
        wake.clear()

    def _report(self, applied: list[Applied]) -> None:
        svc = self.svc
        now = time.time()
        wake_worker = False
        for item in applied:
            result = item.result
            event = event_label(result.event)
            lag = max(0.0, now - item.received_at)
            svc.metrics.inc("connector_webhooks_received_total", event=event, outcome=result.outcome)
            svc.metrics.observe("connector_apply_lag_seconds", lag)
            wake_worker = wake_worker or result.job_id is not None or result.cancelled_jobs > 0
            conversation = (f"{result.account_id}/{result.conversation_id}"
                            if result.account_id is not None and result.conversation_id is not None else None)
            log_event(log, "webhook.received", level=40 if item.error else 20, delivery=item.delivery_id,
                      event=event, outcome=result.outcome, reason=result.reason, conversation=conversation,
                      job=result.job_id, error=item.error or None, lag_ms=round(lag * 1000, 1))
        if wake_worker:
            svc.wake.set()


def yield_seconds(batch_cpu_seconds: float) -> float:
    """The pause after a batch that keeps the applier at SATURATED_SHARE of the time."""
    return batch_cpu_seconds * (1 - SATURATED_SHARE) / SATURATED_SHARE


def _timed_apply(tx: Tx, settings: IntakeSettings, limit: int) -> tuple[list[Applied], float]:
    """apply_pending plus the writer thread's CPU time it took (the pacing measure)."""
    started = time.thread_time()
    applied = apply_pending(tx, settings, limit)
    return applied, time.thread_time() - started

