"""Provides the journal applier: turns acknowledged deliveries into conversation state and work.

The webhook is answered as soon as its raw delivery is committed (sidecar.inbound.intake); this
loop then applies the journal in arrival order, a batch per transaction (conversation snapshot,
message, ownership, queued job), reports each delivery's final outcome in the log and the
metrics, and tells the queue worker when there is work. Pending rows survive a crash and are
applied on the next start, before anything newer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from sidecar.inbound.apply import Applied, ApplySettings, apply_pending
from sidecar.inbound.payload import event_label
from sidecar.ops.logs import REDACTOR, get_logger, log_event
from sidecar.ops.metrics import Metrics
from sidecar.queue.pacing import Pacing
from state import StateService, StorageUnavailable

log = get_logger()
_STORAGE_RETRY_SECONDS = 1.0
IDLE_SECONDS = 1.0
"""Longest wait between looks at the journal when nobody says there is something new (other
processes journal too, and their wake-ups do not reach this one)."""
BATCH = 64
"""Deliveries applied per transaction: large enough to amortise the commit, small enough that
acknowledgements queued behind the batch wait only a few milliseconds."""
SMALL_BATCH = 8
"""The batch while webhooks wait for the CPU (sidecar.queue.pacing)."""


class JournalApplier:
    def __init__(self, state: StateService, settings: Callable[[], ApplySettings], metrics: Metrics,
                 pacing: Pacing, work_queued: Callable[[], None], *, idle_seconds: float = IDLE_SECONDS) -> None:
        self._state = state
        self._settings = settings
        self._metrics = metrics
        self._pacing = pacing
        self._work_queued = work_queued
        self._idle_seconds = idle_seconds
        self._wake = asyncio.Event()
        self.problem: str | None = None
        """Why the latest batch failed (None once a batch went through): /health shows it."""

    def wake(self) -> None:
        """A delivery was journaled."""
        self._wake.set()

    async def run(self) -> None:
        """Runs until cancelled (at shutdown); a batch in flight still commits or rolls back whole."""
        while True:
            await self._pacing.yield_to_intake()
            # While webhooks wait (the share is down), small batches: an acknowledgement queued
            # behind one waits for it to commit.
            batch = BATCH if not self._pacing.saturated else SMALL_BATCH
            try:
                applied = await self._state.write(apply_pending, self._settings(), batch)
            except StorageUnavailable as exc:
                self.problem = REDACTOR.redact(str(exc))
                log_event(log, "webhook.apply_storage_unavailable", level=40, error=str(exc))
                await self._idle(_STORAGE_RETRY_SECONDS)
                continue
            self.problem = None
            self._report(applied)
            if len(applied) < batch:
                await self._idle(self._idle_seconds)

    async def _idle(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        self._wake.clear()

    def _report(self, applied: list[Applied]) -> None:
        metrics = self._metrics
        now = time.time()
        queued = False
        for item in applied:
            result = item.result
            event = event_label(result.event)
            lag = max(0.0, now - item.received_at)
            metrics.inc("connector_webhooks_received_total", event=event, outcome=result.outcome)
            metrics.observe("connector_apply_lag_seconds", lag)
            queued = queued or result.job_id is not None or result.cancelled_jobs > 0
            conversation = (f"{result.account_id}/{result.conversation_id}"
                            if result.account_id is not None and result.conversation_id is not None else None)
            log_event(log, "webhook.received", level=40 if item.error else 20, delivery=item.delivery_id,
                      event=event, outcome=result.outcome, reason=result.reason, conversation=conversation,
                      job=result.job_id, error=item.error or None, lag_ms=round(lag * 1000, 1))
        if queued:
            self._work_queued()
