"""Provides the queue worker: claims due jobs, asks their crews, hands the answers to the reply poster.

One asyncio task claims batches (sidecar.queue.crew_step: routed, enveloped and counted in the
claim's own commit) and starts one task per job. A job is leased while it is held; one loop
renews every lease this worker holds in a single statement, so after ``kill -9`` another start
picks the job up once its lease expires and sends the crew the same request (same
Idempotency-Key, same body).

Slow crews never queue customers: a job holds a worker slot (``processing.concurrency``, high)
while it waits for its crew, and crew calls are bounded per back-end (``max_in_flight``); waiting
for a free call slot is never part of the call's timeout. A crew that answers 202 and calls back
(or is polled) holds no slot while it thinks: the job is parked in the queue.

A little over 400 lines: the worker's loop, its leases and its crew step stay together (the
transactions it runs live in :mod:`sidecar.queue.crew_step`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from sidecar.config import Config
from sidecar.crew.base import Accepted, Answered, CrewError, CrewRequest
from sidecar.crew.breaker import BreakerBoard
from sidecar.crew.envelope import burst_text
from sidecar.crew.registry import CrewRegistry
from sidecar.ops.logs import get_logger, log_event
from sidecar.ops.metrics import Metrics
from sidecar.ops.slots import Slots
from sidecar.outbound.chatwoot import NO_TYPING_CHANNELS, ChatwootClient, ChatwootError
from sidecar.outbound.replies import ReplyPoster
from sidecar.queue import crew_step
from sidecar.queue.crew_step import AttemptRow, Backend, Prepare, Work
from sidecar.queue.pacing import Pacing
from sidecar.queue.retry import retry_delay
from sidecar.queue.routing import Decision, RoutingInput, decide
from state import Job, StateService, StorageUnavailable, Tx
from state.vocabulary import AUTO

log = get_logger()
_MAX_IDLE_SECONDS = 1.0
CLAIM_BATCH = 64
"""Most jobs claimed (and routed, and enveloped) in one transaction: a webhook's commit queued
behind the claim waits for it, so the batch stays a few milliseconds long."""


class QueueWorker:
    def __init__(self, *, config: Callable[[], Config], state: StateService, crews: CrewRegistry,
                 breakers: BreakerBoard, slots: Slots, poster: ReplyPoster, chatwoot: ChatwootClient,
                 session: aiohttp.ClientSession, metrics: Metrics, pacing: Pacing, worker_id: str) -> None:
        self._config = config
        self._state = state
        self._crews = crews
        self._breakers = breakers
        self._slots = slots
        self._poster = poster
        self._chatwoot = chatwoot
        self._session = session
        self._metrics = metrics
        self._pacing = pacing
        self.worker_id = worker_id
        self._held: dict[int, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()

    # -- the loop ------------------------------------------------------------------------------
    def wake(self) -> None:
        """There may be work (a delivery was applied, a callback arrived, a job ended)."""
        self._wake.set()

    @property
    def held(self) -> int:
        return len(self._held)

    async def run(self) -> None:
        renewer = asyncio.create_task(self._renew_leases(), name="lease-renewal")
        try:
            while not self._stopping.is_set():
                await self._pacing.yield_to_intake()
                config = self._config()
                free = config.processing.concurrency - len(self._held)
                limit = self._pacing.claim_limit(min(free, CLAIM_BATCH))
                batch: list[Work] = []
                # Cleared before looking: a wake-up that arrives while we look is kept for the
                # next round instead of being lost.
                self._wake.clear()
                if limit > 0:
                    try:
                        batch = await self._state.write(crew_step.claim, self._prepare(config), time.time(), limit)
                    except StorageUnavailable as exc:
                        log_event(log, "queue.storage_unavailable", level=40, error=str(exc))
                for work in batch:
                    self._start(work)
                if batch and len(batch) == limit:
                    continue  # there may be more ready work
                await self._idle(await self._seconds_to_next_due() if free > 0 else _MAX_IDLE_SECONDS)
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer

    def _prepare(self, config: Config) -> Prepare:
        self._crews.refresh(config)
        return Prepare(owner=self.worker_id, config=config, backend=self._backend, breakers=self._breakers,
                       engine=bool(config.mcp_crew.decision_engine_url))

    def _backend(self, crew: str) -> Backend:
        name, backend, _ = self._crews.resolve(crew)
        return Backend(name, backend.kind, backend.breaker_key)

    def _start(self, work: Work) -> None:
        job_id = work.job.id
        if job_id in self._held:
            return  # our own lease expired and we took the job again: it is being handled
        task = asyncio.create_task(self._handle(work), name=f"job-{job_id}")
        self._held[job_id] = task
        task.add_done_callback(lambda _t, job_id=job_id: self._release(job_id))

    def _release(self, job_id: int) -> None:
        self._held.pop(job_id, None)
        self._wake.set()

    async def _seconds_to_next_due(self) -> float:
        try:
            due = await self._state.read(lambda tx: tx.jobs.next_due_at())
        except StorageUnavailable:
            return _MAX_IDLE_SECONDS
        if due is None:
            return _MAX_IDLE_SECONDS
        return min(_MAX_IDLE_SECONDS, max(0.0, due - time.time()))

    async def _idle(self, seconds: float) -> None:
        if seconds > 0:
            # asyncio.timeout: wait_for can swallow a shutdown's cancellation on Python 3.11.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._wake.wait()

    async def _renew_leases(self) -> None:
        """Every lease this worker holds, renewed together a few times per lease period."""
        while True:
            lease = self._config().processing.lease_seconds
            await asyncio.sleep(lease / 3)
            if not self._held:
                continue
            now = time.time()
            with contextlib.suppress(StorageUnavailable):
                await self._state.write(_renew, self.worker_id, now, now + lease)

    async def stop(self, grace_seconds: float) -> None:
        """Stops claiming, lets held jobs finish (up to ``grace_seconds``), releases the rest."""
        self._stopping.set()
        self._wake.set()
        running = set(self._held.values())
        if running:
            _, pending = await asyncio.wait(running, timeout=grace_seconds)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2)
        with contextlib.suppress(StorageUnavailable):
            released = await self._state.write(lambda tx: tx.jobs.release_leases(self.worker_id, time.time()))
            if released:
                log_event(log, "queue.leases_released", jobs=released)

    # -- one job --------------------------------------------------------------------------------
    async def _handle(self, work: Work) -> None:
        job = work.job
        started = time.monotonic()
        try:
            if work.decision is not None:
                self._decided(job, work.decision)
            if work.kind == crew_step.SKIPPED:
                self._skipped(work)
                return
            if work.kind == crew_step.ERROR:
                log.error("job %s could not be prepared: %s", job.id, work.extra.get("error"))
                await self._retry_or_fail(job, work.reason, retry_after=None, attempt=max(1, job.attempts))
                return
            if work.kind == crew_step.DECIDE:
                work = await self._decide(work)
                if work.kind == crew_step.SKIPPED:
                    self._skipped(work)
                    return
                if work.kind == crew_step.APPLY:
                    await self._poster.apply(work.job, started=started)
                    return
            if work.kind == crew_step.APPLY:
                await self._poster.apply(job, started=started)
                return
            if work.kind == crew_step.POLL:
                answered = await self._poll(job)
            else:
                answered = await self._call(work)
            if answered is not None:
                answered_job, first = answered
                await self._poster.apply(answered_job, first, started=started)
        except StorageUnavailable as exc:
            # The lease will expire and the job will be picked up again.
            log_event(log, "job.storage_unavailable", level=40, job=job.id, error=str(exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the worker loop
            log.exception("job %s failed unexpectedly", job.id)
            with contextlib.suppress(StorageUnavailable):
                await self._retry_or_fail(job, f"internal error: {type(exc).__name__}", retry_after=None,
                                          attempt=max(1, job.attempts))

    def _decided(self, job: Job, decision: Decision) -> None:
        self._metrics.inc("connector_routing_decisions_total", crew=decision.crew, source=decision.source)
        self._metrics.observe("connector_routing_duration_seconds", decision.duration)
        if decision.source != "rules" or log.isEnabledFor(logging.DEBUG):
            log_event(log, "routing.decided", level=logging.INFO if decision.source != "rules" else logging.DEBUG,
                      job=job.id, conversation=f"{job.account_id}/{job.conversation_id}", crew=decision.crew,
                      source=decision.source, reason=decision.reason, ms=round(decision.duration * 1000, 1))

    def _skipped(self, work: Work) -> None:
        job = work.job
        if work.reason == "deferred_breaker_open":
            self._metrics.inc("connector_crew_requests_total", crew=job.crew or "", outcome="deferred_breaker_open")
        elif work.reason == "lease lost":  # another worker took it meanwhile (this one was paused)
            log_event(log, "job.lease_lost", level=30, job=job.id, step="prepare")
        else:
            log_event(log, "job.cancelled", job=job.id, conversation=f"{job.account_id}/{job.conversation_id}",
                      reason=work.reason)
        self._wake.set()  # a newer burst of the conversation may be claimable now

    async def _decide(self, work: Work) -> Work:
        """Asks the decision engine (the local rules' pick is its suggestion), then starts the call."""
        assert work.context is not None
        conv, burst, history = work.context
        job = work.job
        config = self._config()
        text = burst_text(burst)
        engine_body = {
            "request_id": job.request_id, "message": text,
            "conversation": {"account_id": conv.account_id, "conversation_id": conv.conversation_id,
                             "inbox_id": conv.inbox_id, "status": conv.status, "labels": list(conv.labels)},
            "contact": conv.contact, "channel": conv.channel,
            "context": [{"role": m.role, "content": m.content} for m in history],
        }
        item = RoutingInput(channel=conv.channel, inbox_id=conv.inbox_id, text=text, labels=conv.labels)
        decision = await decide(config, self._session, item, engine_body=engine_body)
        self._decided(job, decision)
        return await self._state.write(crew_step.start_call, work, self._prepare(config), decision)

    async def _call(self, work: Work) -> tuple[Job, Any] | None:
        """One crew attempt (its number is already counted and committed)."""
        job = work.job
        assert job.crew is not None and job.envelope_json is not None
        name, backend, limit = self._crews.resolve(job.crew)
        request = CrewRequest(job.request_id, job.crew, job.envelope_json, job.attempts)
        typing = self._typing(job, work.channel)
        async with self._slots.slot(name, limit):
            # Waiting for a slot is over: from here on the call's own timeout runs.
            started_wall, started = time.time(), time.monotonic()
            if typing is not None:
                typing.start()
            try:
                result: Answered | Accepted = await backend.submit(request)
            except CrewError as exc:
                duration = time.monotonic() - started
                self._breakers.get(backend.breaker_key).record(not exc.counts_against_backend)
                row = self._attempt_row(job, backend.kind, started_wall, duration,
                                        "retry" if exc.retryable else "failed", exc.status_code, str(exc))
                await self._crew_failed(job, exc, row)
                return None
            finally:
                if typing is not None:
                    await typing.stop()
        duration = time.monotonic() - started
        self._breakers.get(backend.breaker_key).record(True)
        outcome = "answered" if isinstance(result, Answered) else "accepted"
        row = self._attempt_row(job, backend.kind, started_wall, duration, outcome, result.status_code, "")
        return await self._crew_result(job, result, row)

    async def _poll(self, job: Job) -> tuple[Job, Any] | None:
        """The crew accepted this request earlier; its answer is late or must be polled."""
        assert job.crew is not None
        _, backend, _ = self._crews.resolve(job.crew)
        if job.deadline_at is not None and time.time() >= job.deadline_at:
            await self._fail(job, "the crew did not answer before the deadline")
            return None
        request = CrewRequest(job.request_id, job.crew, job.envelope_json or "", job.attempts, job.external_id)
        try:
            result = await backend.poll(request)
        except CrewError as exc:
            await self._crew_failed(job, exc, None)
            return None
        return await self._crew_result(job, result, None)

    def _attempt_row(self, job: Job, backend: str, started: float, duration: float, outcome: str,
                     status: int | None, error: str) -> AttemptRow:
        self._metrics.observe("connector_crew_request_duration_seconds", duration, crew=job.crew or "")
        if outcome not in ("answered", "accepted") or log.isEnabledFor(logging.DEBUG):
            log_event(log, "crew.attempt", level=logging.DEBUG if outcome in ("answered", "accepted") else 30,
                      job=job.id, conversation=f"{job.account_id}/{job.conversation_id}", crew=job.crew,
                      backend=backend, attempt=job.attempts, outcome=outcome, status=status,
                      ms=round(duration * 1000, 1))
        return AttemptRow(job.id, job.request_id, job.crew or "", backend, job.attempts, started, duration, outcome,
                          status, error)

    async def _crew_result(self, job: Job, result: Answered | Accepted, row: AttemptRow | None
                           ) -> tuple[Job, Any] | None:
        """Stores the crew's answer with its attempt and the first reply step, or parks the job
        until an asynchronous answer comes (it then holds no worker slot)."""
        if isinstance(result, Answered):
            self._metrics.inc("connector_crew_requests_total", crew=job.crew or "", outcome="answered")
            stored = await self._state.write(crew_step.store_answer, job, self.worker_id, row, result.actions,
                                             self._config(), durable=True)
            if stored is None:
                # Paused past the lease (or partitioned): another worker has the job; our write was
                # refused, and the answer it gets from the crew (same Idempotency-Key) is posted once.
                log_event(log, "job.lease_lost", level=30, job=job.id, step="answer")
            return stored
        self._metrics.inc("connector_crew_requests_total", crew=job.crew or "", outcome="accepted")
        config = self._config()
        now = time.time()
        crew_cfg = config.crew(job.crew or "")
        deadline = job.deadline_at or now + (crew_cfg.deadline_seconds if crew_cfg else
                                             config.mcp_crew.callback_timeout_seconds)
        run_at = now + result.poll_after if result.poll_after is not None else deadline
        external_id = result.external_id
        owner = self.worker_id

        def park(tx: Tx) -> bool:
            if row is not None:
                row.write(tx)
            return tx.jobs.set_waiting(job.id, owner, run_at=run_at, deadline_at=deadline, external_id=external_id, now=now)

        if not await self._state.write(park):
            log_event(log, "job.lease_lost", level=30, job=job.id, step="park")
            return None
        log_event(log, "crew.accepted", job=job.id, crew=job.crew, attempt=job.attempts)
        self._wake.set()  # in case the answer already arrived while we were parking the job
        return None

    async def _crew_failed(self, job: Job, exc: CrewError, row: AttemptRow | None) -> None:
        self._metrics.inc("connector_crew_requests_total", crew=job.crew or "",
                          outcome="retry" if exc.retryable else "failed")
        log_event(log, "crew.failed", level=30, job=job.id, conversation=f"{job.account_id}/{job.conversation_id}",
                  crew=job.crew, attempt=job.attempts, error=str(exc), retryable=exc.retryable)
        if not exc.retryable:
            await self._fail(job, str(exc), row)
            return
        await self._retry_or_fail(job, str(exc), retry_after=exc.retry_after, attempt=job.attempts or 1, row=row)

    async def _retry_or_fail(self, job: Job, reason: str, *, retry_after: float | None, attempt: int,
                             row: AttemptRow | None = None) -> None:
        p = self._config().processing
        if attempt >= p.max_attempts:
            await self._fail(job, f"{reason} (after {attempt} attempts)", row)
            return
        delay = retry_delay(attempt, base=p.retry_base_seconds, maximum=p.retry_max_seconds, retry_after=retry_after)
        owner = self.worker_id

        def retry(tx: Tx) -> bool:
            if row is not None:
                row.write(tx)
            now = time.time()
            return tx.jobs.schedule_retry(job.id, owner, now + delay, reason, now)

        if not await self._state.write(retry):
            log_event(log, "job.lease_lost", level=30, job=job.id, step="retry")

    async def _fail(self, job: Job, reason: str, row: AttemptRow | None = None) -> None:
        """Final failure: dead letter, and (by default) a hand-off whose note says why."""
        failed = await self._state.write(crew_step.store_failure, job, self.worker_id, row, reason, self._config())
        if failed is None:
            log_event(log, "job.lease_lost", level=30, job=job.id, step="fail")
            return
        log_event(log, "crew.gave_up", level=40, job=job.id, conversation=f"{job.account_id}/{job.conversation_id}",
                  crew=job.crew, reason=reason)
        await self._poster.apply(failed)

    def _typing(self, job: Job, channel: str) -> _Typing | None:
        """A typing indicator for a crew that takes a while (never for channels that show none)."""
        chatwoot = self._config().chatwoot
        if not chatwoot.typing_indicator or channel in NO_TYPING_CHANNELS or job.mode != AUTO:
            return None  # a draft or shadow crew never shows the customer anything
        return _Typing(self._chatwoot, job.account_id, job.conversation_id, chatwoot.typing_delay_seconds)


def _renew(tx: Tx, owner: str, now: float, until: float) -> int:
    return tx.jobs.renew_leases(owner, now, until)


class _Typing:
    """Shows "typing…" once the crew has worked ``delay`` seconds; best effort, never fails a job."""

    def __init__(self, chatwoot: ChatwootClient, account_id: int, conversation_id: int, delay: float) -> None:
        self._chatwoot = chatwoot
        self._account_id = account_id
        self._conversation_id = conversation_id
        self._delay = delay
        self._task: asyncio.Task[None] | None = None
        self._shown = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._show())

    async def _show(self) -> None:
        if self._delay > 0:
            await asyncio.sleep(self._delay)
        self._shown = True
        with contextlib.suppress(ChatwootError):
            await self._chatwoot.typing(self._account_id, self._conversation_id, True)

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._shown:
            with contextlib.suppress(ChatwootError):
                await self._chatwoot.typing(self._account_id, self._conversation_id, False)
