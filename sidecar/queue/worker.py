"""Provides the queue worker: claims due jobs, asks the crew, applies the answer.

One asyncio task in the sidecar's loop; a job is leased while it is handled (a heartbeat
extends the lease), so after ``kill -9`` another start picks it up once the lease expires
and sends the crew the same request (same Idempotency-Key, same body).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from sidecar.crew.base import Accepted, Answered, CrewError, CrewRequest
from sidecar.crew.envelope import build_envelope, burst_text
from sidecar.inbound import ownership
from sidecar.ops.logs import get_logger, log_event
from sidecar.outbound.chatwoot import ChatwootError
from sidecar.outbound.replies import ActionApplier, failure_actions
from sidecar.queue.pacing import SATURATED_SHARE
from sidecar.queue.retry import retry_delay
from sidecar.queue.routing import Decision, RoutingInput, decide
from sidecar.services import Services
from state import ConversationRow, Job, MessageRow, StorageUnavailable, Tx

log = get_logger()
_MAX_IDLE_SECONDS = 1.0
_NO_TYPING_CHANNELS = frozenset({"whatsapp", "facebook", "instagram"})
_Context = tuple[list[MessageRow], list[MessageRow]]
"""A burst's messages and the history before it."""


class QueueWorker:
    def __init__(self, services: Services) -> None:
        self.svc = services
        self.applier = ActionApplier(services)
        self._running: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()

    # -- loop ------------------------------------------------------------------------
    async def run(self) -> None:
        svc = self.svc
        while not self._stopping.is_set():
            config = svc.config.current
            free = max(0, self._concurrency(config.processing.concurrency) - len(self._running))
            jobs: list[Job] = []
            if free:
                try:
                    jobs = await svc.writer.transact(
                        Tx.claim_jobs, svc.worker_id, time.time(), config.processing.lease_seconds, free
                    )
                except StorageUnavailable as exc:
                    log_event(log, "queue.storage_unavailable", level=40, error=str(exc))
            for job in jobs:
                task = asyncio.create_task(self._process(job), name=f"job-{job.id}")
                self._running.add(task)
                task.add_done_callback(self._done)
            if jobs and len(jobs) == free:
                continue  # there may be more ready work
            due_in = await self._seconds_to_next_due()
            if due_in <= 0 and not free:
                due_in = _MAX_IDLE_SECONDS  # full: a finishing job sets ``wake``
            await self._idle(max(due_in, 0.01))

    def _concurrency(self, configured: int) -> int:
        """Jobs handled at once: all of them, or a share while webhooks need the whole CPU
        (jobs already running finish; fewer new ones start)."""
        if self.svc.saturated():
            return max(1, round(configured * SATURATED_SHARE))
        return configured

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self.svc.wake.set()

    async def _seconds_to_next_due(self) -> float:
        try:
            due = await self.svc.writer.read(lambda store: store.next_due_at())
        except StorageUnavailable:
            return _MAX_IDLE_SECONDS
        if due is None:
            return _MAX_IDLE_SECONDS
        return min(_MAX_IDLE_SECONDS, max(0.0, due - time.time()))

    async def _idle(self, seconds: float) -> None:
        wake = self.svc.wake
        if seconds > 0:
            # asyncio.timeout: wait_for can swallow a shutdown's cancellation on Python 3.11.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await wake.wait()
        wake.clear()

    async def stop(self, grace_seconds: float) -> None:
        """Stops claiming, lets handled jobs finish (up to ``grace_seconds``), releases the rest."""
        self._stopping.set()
        self.svc.wake.set()
        if self._running:
            _, pending = await asyncio.wait(set(self._running), timeout=grace_seconds)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2)
        with contextlib.suppress(StorageUnavailable):
            released = await self.svc.writer.transact(Tx.release_leases, self.svc.worker_id, time.time())
            if released:
                log_event(log, "queue.leases_released", jobs=released)

    # -- one job -----------------------------------------------------------------------
    async def _process(self, job: Job) -> None:
        heartbeat = asyncio.create_task(self._heartbeat(job))
        try:
            if job.actions is None:
                answered = await self._crew_step(job)
                if answered is None:
                    return
                job = answered
            await self.applier.apply(job)
        except StorageUnavailable as exc:
            # The lease will expire and the job will be picked up again.
            log_event(log, "job.storage_unavailable", level=40, job=job.id, error=str(exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the worker loop
            log.exception("job %s failed unexpectedly", job.id)
            await self._retry_or_fail(job, f"internal error: {type(exc).__name__}", retry_after=None,
                                      attempt=max(1, job.attempts))
        finally:
            heartbeat.cancel()

    async def _heartbeat(self, job: Job) -> None:
        svc = self.svc
        while True:
            lease = svc.config.current.processing.lease_seconds
            await asyncio.sleep(lease / 3)
            with contextlib.suppress(StorageUnavailable):
                held = await svc.writer.transact(Tx.extend_lease, job.id, svc.worker_id, time.time() + lease)
                if not held:
                    return

    async def _crew_step(self, job: Job) -> Job | None:
        """Gets the crew's answer; returns the job with actions, or None if it was parked."""
        svc = self.svc
        svc.crews.refresh(svc.config.current)
        conv, context = await self._inputs(job)
        if conv is None:
            await self._finish(job, "cancelled", "conversation unknown")
            return None
        if job.outcome != "failed":
            owns, why = ownership.bot_owns(conv)
            if not owns:
                await self._finish(job, "cancelled", f"not sent to a crew: {why}")
                return None

        decision: Decision | None = None
        if job.crew is None:
            assert context is not None
            decision = await self._decide(job, conv, context)
            if decision.handoff:
                return await self._store_handoff(job, decision)
        elif job.external_id is not None:
            return await self._poll(job)
        return await self._submit(job, conv, context, decision)

    async def _inputs(self, job: Job) -> tuple[ConversationRow | None, _Context | None]:
        """The conversation and, while the job has no envelope yet, the burst and the history
        before it: one read for ownership, routing and envelope."""
        limit = self.svc.config.current.context.max_messages
        ids = list(job.message_ids)
        needs_context = job.crew is None or job.envelope is None

        def read(tx: Tx) -> tuple[ConversationRow | None, _Context | None]:
            conv = tx.get_conversation(job.account_id, job.conversation_id)
            if conv is None or not needs_context:
                return conv, None
            return conv, (tx.messages_by_ids(job.account_id, job.conversation_id, ids),
                          tx.history(job.account_id, job.conversation_id, limit, ids))

        return await self.svc.writer.query(read)

    async def _poll(self, job: Job) -> Job | None:
        """The crew accepted this request earlier; its answer is late or must be polled."""
        assert job.crew is not None
        backend = self.svc.crews.backend_for(job.crew)
        if job.deadline_at is not None and time.time() >= job.deadline_at:
            return await self._fail(job, "the crew did not answer before the deadline")
        request = CrewRequest(job.request_id, job.crew, job.envelope or {}, job.attempts, job.external_id)
        try:
            result = await backend.poll(request)
        except CrewError as exc:
            return await self._crew_failed(job, exc, job.attempts or 1)
        return await self._crew_result(job, result, job.attempts or 1)

    async def _submit(self, job: Job, conv: ConversationRow, context: _Context | None,
                      decision: Decision | None) -> Job | None:
        """Stores what the request needs, then sends it to the crew (once per attempt)."""
        svc = self.svc
        crew = decision.crew if decision is not None else job.crew
        assert crew is not None
        backend = svc.crews.backend_for(crew)
        envelope = None
        if job.envelope is None:
            assert context is not None
            envelope = self._envelope(job, conv, context, decision)
        breaker = svc.breakers.get(backend.breaker_key)
        if not breaker.allow():
            await self._defer(job, crew, decision, backend.kind, envelope, breaker.retry_at())
            return None
        # Route, envelope and attempt count in one commit, before the crew is called: every
        # retry sends this stored body under the same Idempotency-Key.
        started = await svc.writer.transact(_start_attempt, job.id, svc.worker_id, decision, backend.kind, envelope)
        if started is None:
            return None  # the lease is lost: whoever holds it now does the work
        job, attempt = started, started.attempts
        request = CrewRequest(job.request_id, crew, job.envelope or {}, attempt)
        await self._typing(job, True, conv.channel)
        started_wall, started_at = time.time(), time.monotonic()
        try:
            result: Answered | Accepted = await backend.submit(request)
        except CrewError as exc:
            duration = time.monotonic() - started_at
            breaker.record(not exc.counts_against_backend)
            await svc.writer.transact(self._attempt_row(job, attempt, backend.kind, started_wall, duration,
                                                        "retry" if exc.retryable else "failed",
                                                        exc.status_code, str(exc)))
            return await self._crew_failed(job, exc, attempt)
        finally:
            await self._typing(job, False, conv.channel)
        duration = time.monotonic() - started_at
        breaker.record(True)
        outcome = "answered" if isinstance(result, Answered) else "accepted"
        row = self._attempt_row(job, attempt, backend.kind, started_wall, duration, outcome, result.status_code, "")
        return await self._crew_result(job, result, attempt, row)

    async def _defer(self, job: Job, crew: str, decision: Decision | None, backend: str,
                     envelope: dict[str, Any] | None, retry_at: float) -> None:
        """Deferred without using up an attempt: the back-end is known to be down. The route
        and envelope are kept, so the next try sends the same body."""
        svc = self.svc

        def defer(tx: Tx) -> None:
            now = time.time()
            if _store_new(tx, job.id, svc.worker_id, decision, backend, envelope, now):
                tx.schedule_retry(job.id, svc.worker_id, retry_at, "circuit breaker open", now)

        await svc.writer.transact(defer)
        svc.metrics.inc("connector_crew_requests_total", crew=crew, outcome="deferred_breaker_open")

    async def _decide(self, job: Job, conv: ConversationRow, context: _Context) -> Decision:
        """Asks the local rules (and the decision engine, if configured) which crew answers."""
        svc = self.svc
        config = svc.config.current
        burst, history = context
        text = burst_text(burst)
        item = RoutingInput(channel=conv.channel, inbox_id=conv.inbox_id, text=text, labels=conv.labels)
        engine_body = {
            "request_id": job.request_id,
            "message": text,
            "conversation": {"account_id": conv.account_id, "conversation_id": conv.conversation_id,
                             "inbox_id": conv.inbox_id, "status": conv.status, "labels": list(conv.labels)},
            "contact": conv.contact,
            "channel": conv.channel,
            "context": [{"role": m.role, "content": m.content} for m in history],
        }
        decision: Decision = await decide(config, svc.session, item, engine_body=engine_body)
        svc.metrics.inc("connector_routing_decisions_total", crew=decision.crew, source=decision.source)
        svc.metrics.observe("connector_routing_duration_seconds", decision.duration)
        log_event(log, "routing.decided", job=job.id, conversation=f"{job.account_id}/{job.conversation_id}",
                  crew=decision.crew, source=decision.source, reason=decision.reason,
                  ms=round(decision.duration * 1000, 1))
        return decision

    async def _store_handoff(self, job: Job, decision: Decision) -> Job:
        """The decision engine asked for a human: route and hand-off action in one commit."""
        svc = self.svc
        kind = svc.crews.backend_for(decision.crew).kind
        actions = ({"type": "handoff", "reason": decision.reason or "decision engine asked for a human"},)

        def store(tx: Tx) -> Job:
            now = time.time()
            if _store_new(tx, job.id, svc.worker_id, decision, kind, None, now):
                tx.store_actions(job.id, svc.worker_id, actions, now)
            return tx.get_job(job.id)

        return await svc.writer.transact(store)

    def _envelope(self, job: Job, conv: ConversationRow, context: _Context,
                  decision: Decision | None) -> dict[str, Any]:
        """The request body; a fresh decision is not stored yet, so the route comes from it."""
        burst, history = context
        public = self.svc.config.current.server.public_url.rstrip("/")
        if decision is not None:
            crew, route = decision.crew, {"crew": decision.crew, "source": decision.source,
                                          "reason": decision.reason, "confidence": decision.confidence}
        else:
            crew, route = job.crew or "", {"crew": job.crew, "source": job.route_source,
                                           "reason": job.route_reason, "confidence": job.route_confidence}
        return build_envelope(
            job=job, conversation=conv, burst=burst, history=history, crew=crew, route=route,
            callback_url=f"{public}/webhook/mcp-crew" if public else "",
        )

    async def _crew_result(self, job: Job, result: Answered | Accepted, attempt: int,
                           attempt_row: Callable[[Tx], None] | None = None) -> Job | None:
        """Stores the crew's result (with the attempt's row, if any) in one commit."""
        svc = self.svc
        config = svc.config.current
        now = time.time()
        if isinstance(result, Answered):
            svc.metrics.inc("connector_crew_requests_total", crew=job.crew or "", outcome="answered")

            def store(tx: Tx) -> Job:
                if attempt_row is not None:
                    attempt_row(tx)
                tx.store_actions(job.id, svc.worker_id, result.actions, now)
                return tx.get_job(job.id)

            return await svc.writer.transact(store)
        svc.metrics.inc("connector_crew_requests_total", crew=job.crew or "", outcome="accepted")
        crew_cfg = config.crew(job.crew or "")
        deadline = job.deadline_at or now + (crew_cfg.deadline_seconds if crew_cfg else
                                             config.mcp_crew.callback_timeout_seconds)
        run_at = now + result.poll_after if result.poll_after is not None else deadline
        external_id = result.external_id

        def park(tx: Tx) -> None:
            if attempt_row is not None:
                attempt_row(tx)
            tx.set_waiting(job.id, svc.worker_id, run_at=run_at, deadline_at=deadline,
                           external_id=external_id, now=now)

        await svc.writer.transact(park)
        log_event(log, "crew.accepted", job=job.id, crew=job.crew, attempt=attempt)
        svc.wake.set()  # in case the answer already arrived while we were parking the job
        return None

    async def _crew_failed(self, job: Job, exc: CrewError, attempt: int) -> Job | None:
        self.svc.metrics.inc("connector_crew_requests_total", crew=job.crew or "",
                             outcome="retry" if exc.retryable else "failed")
        log_event(log, "crew.failed", level=30, job=job.id, conversation=f"{job.account_id}/{job.conversation_id}",
                  crew=job.crew, attempt=attempt, error=str(exc), retryable=exc.retryable)
        if not exc.retryable:
            return await self._fail(job, str(exc))
        return await self._retry_or_fail(job, str(exc), retry_after=exc.retry_after, attempt=attempt)

    async def _retry_or_fail(self, job: Job, reason: str, *, retry_after: float | None, attempt: int) -> Job | None:
        svc = self.svc
        p = svc.config.current.processing
        if attempt >= p.max_attempts:
            return await self._fail(job, f"{reason} (after {attempt} attempts)")
        delay = retry_delay(attempt, base=p.retry_base_seconds, maximum=p.retry_max_seconds, retry_after=retry_after)
        await svc.writer.transact(lambda tx: tx.schedule_retry(job.id, svc.worker_id, time.time() + delay, reason,
                                                               time.time()))
        return None

    async def _fail(self, job: Job, reason: str) -> Job | None:
        """Final failure: dead letter, and (by default) a private note plus a hand-off."""
        svc = self.svc
        p = svc.config.current.processing
        actions = failure_actions(reason, note=p.failure_note, handoff=p.failure_handoff)

        def mark(tx: Tx) -> Job | None:
            now = time.time()
            if not tx.mark_failed(job.id, svc.worker_id, reason, now):
                return None
            tx.store_actions(job.id, svc.worker_id, actions, now)
            return tx.get_job(job.id)

        failed = await svc.writer.transact(mark)
        log_event(log, "crew.gave_up", level=40, job=job.id, conversation=f"{job.account_id}/{job.conversation_id}",
                  crew=job.crew, reason=reason)
        return failed

    async def _finish(self, job: Job, state: str, reason: str) -> None:
        svc = self.svc
        await svc.writer.transact(lambda tx: tx.finish_job(job.id, svc.worker_id, state, state, reason, time.time()))
        log_event(log, f"job.{state}", job=job.id, conversation=f"{job.account_id}/{job.conversation_id}",
                  reason=reason)

    def _attempt_row(self, job: Job, attempt: int, backend: str, started: float, duration: float,
                     outcome: str, status: int | None, error: str) -> Callable[[Tx], None]:
        """Logs the attempt and returns its row's write, for the caller to commit together
        with what the attempt produced."""
        svc = self.svc
        svc.metrics.observe("connector_crew_request_duration_seconds", duration, crew=job.crew or "")
        log_event(log, "crew.attempt", level=20 if outcome in ("answered", "accepted") else 30, job=job.id,
                  conversation=f"{job.account_id}/{job.conversation_id}", crew=job.crew, backend=backend,
                  attempt=attempt, outcome=outcome, status=status, ms=round(duration * 1000, 1))
        return lambda tx: tx.record_attempt(
            job_id=job.id, request_id=job.request_id, crew=job.crew or "", backend=backend, attempt=attempt,
            started_at=started, duration=duration, outcome=outcome, status_code=status, error=error)

    async def _typing(self, job: Job, on: bool, channel: str) -> None:
        """Best effort: a typing indicator must never fail or delay the answer."""
        svc = self.svc
        # Chatwoot shows typing in its dashboard and the website widget only; it does not
        # forward it to WhatsApp, Facebook or Instagram, so those calls would be wasted.
        if not svc.config.current.chatwoot.typing_indicator or channel in _NO_TYPING_CHANNELS:
            return
        with contextlib.suppress(ChatwootError):
            await svc.chatwoot.typing(job.account_id, job.conversation_id, on)


def _store_new(tx: Tx, job_id: int, owner: str, decision: Decision | None, backend: str,
               envelope: dict[str, Any] | None, now: float) -> bool:
    """Stores a fresh route and envelope (each only if given); False if the lease is lost.
    Both writes are fenced on the same lease in one transaction, so both or neither happen."""
    if decision is not None and not tx.set_route(
            job_id, owner, crew=decision.crew, backend=backend, source=decision.source,
            reason=decision.reason, confidence=decision.confidence, now=now):
        return False
    return envelope is None or tx.set_envelope(job_id, owner, envelope, now)


def _start_attempt(tx: Tx, job_id: int, owner: str, decision: Decision | None, backend: str,
                   envelope: dict[str, Any] | None) -> Job | None:
    """Stores what is new, counts one more attempt and returns the job as committed
    (None if the lease is lost)."""
    now = time.time()
    if not _store_new(tx, job_id, owner, decision, backend, envelope, now):
        return None
    if tx.start_attempt(job_id, owner, now) is None:
        return None
    return tx.get_job(job_id)
