"""Provides the crew step's transactions: claim and prepare jobs, start an attempt, store an answer.

Everything a crew request needs is decided and stored in the transaction that claims the job, on
the state writer's thread, in one commit for the whole batch: ownership is checked, the local rules
pick the crew, the envelope is built and stored, and the attempt is counted before the request
goes out, so every retry sends the identical body under the same Idempotency-Key. Only a decision
engine (an HTTP call) splits this in two: claim first, then :func:`start_call`.

When the answer is back, :func:`store_answer` records the attempt, stores the actions and commits
the first reply step's intent row (sidecar.outbound.replies) in one durable commit.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sidecar.config import Config
from sidecar.crew.breaker import BreakerBoard
from sidecar.crew.envelope import build_envelope, burst_text
from sidecar.inbound import ownership
from sidecar.outbound.replies import _Opening, open_first_step
from sidecar.outbound.shaping import shape
from sidecar.outbound.steps import failure_actions
from sidecar.queue import policy
from sidecar.queue.routing import Decision, RoutingInput, decide_by_rules
from state import ConversationRow, Job, MessageRow, Route, StorageUnavailable, Tx
from state.sql import dumps
from state.vocabulary import PASSIVE_MODES, SHADOW

CALL, APPLY, POLL, DECIDE, SKIPPED, ERROR = "call", "apply", "poll", "decide", "skipped", "error"


@dataclass(frozen=True, slots=True)
class Backend:
    """What the claim transaction needs to know of the back-end serving a crew."""

    name: str
    kind: str
    breaker_key: str


@dataclass(frozen=True, slots=True)
class Prepare:
    """What preparing a job needs, read once per claim (the live config at that moment)."""

    owner: str
    config: Config
    backend: Callable[[str], Backend]
    breakers: BreakerBoard
    engine: bool
    """A decision engine is configured: fresh jobs are routed after the claim, over HTTP."""

    @property
    def callback_url(self) -> str:
        public = self.config.server.public_url.rstrip("/")
        return f"{public}/webhook/mcp-crew" if public else ""


@dataclass(frozen=True, slots=True)
class Work:
    """A claimed job and what the worker does with it next."""

    kind: str
    job: Job
    channel: str = ""
    decision: Decision | None = None
    """A fresh local decision (logged and counted by the worker)."""
    reason: str = ""
    context: tuple[ConversationRow, list[MessageRow], list[MessageRow]] | None = None
    """DECIDE: the conversation, the burst and the history, for the decision engine."""
    extra: dict[str, Any] = field(default_factory=dict)


def claim(tx: Tx, prepare: Prepare, now: float, limit: int) -> list[Work]:
    """Claims up to ``limit`` ready jobs and prepares each (one savepoint per job: a job whose
    preparation fails is handed back as ERROR, the others go on)."""
    processing = prepare.config.processing
    jobs = tx.jobs.claim(prepare.owner, now, processing.lease_seconds, limit)
    if not jobs:
        return []
    try:  # optimistic: one savepoint for the batch, one per job only when a job fails
        with tx.savepoint():
            return [_prepare(tx, job, prepare, now) for job in jobs]
    except StorageUnavailable:
        raise
    except Exception:  # noqa: BLE001 - find the job at fault, below
        return [_prepare_alone(tx, job, prepare, now) for job in jobs]


def _prepare_alone(tx: Tx, job: Job, prepare: Prepare, now: float) -> Work:
    try:
        with tx.savepoint():
            return _prepare(tx, job, prepare, now)
    except StorageUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - one bad job must not stop the batch
        return Work(ERROR, job, reason=f"internal error: {type(exc).__name__}", extra={"error": repr(exc)})


def _prepare(tx: Tx, job: Job, prepare: Prepare, now: float) -> Work:
    if job.actions is not None:
        return Work(APPLY, job)
    conv = tx.conversations.get(job.account_id, job.conversation_id)
    if conv is None:
        _finish(tx, job, prepare.owner, "cancelled", "conversation unknown", now)
        return Work(SKIPPED, job, reason="conversation unknown")
    config = prepare.config
    fresh = job.crew is None
    burst: list[MessageRow] = []
    history: list[MessageRow] = []
    local: Decision | None = None
    mode = job.mode
    if fresh or job.envelope_json is None:
        burst = tx.messages.by_ids(job.account_id, job.conversation_id, list(job.message_ids))
        history = tx.messages.history(job.account_id, job.conversation_id, config.context.max_messages,
                                      list(job.message_ids))
    if fresh:
        local = decide_by_rules(config, RoutingInput(
            channel=conv.channel, inbox_id=conv.inbox_id, text=burst_text(burst), labels=conv.labels))
        mode = policy.mode_for(config, local.rule_index, conv.inbox_id)
    passive = mode in PASSIVE_MODES or job.shadow_of is not None
    if job.outcome != "failed" and not passive:
        owns, why = ownership.bot_owns(conv)
        if not owns:
            reason = f"not sent to a crew: {why}"
            _finish(tx, job, prepare.owner, "cancelled", reason, now)
            return Work(SKIPPED, job, reason=reason)
    if job.crew is not None and job.external_id is not None:
        return Work(POLL, job, channel=conv.channel)
    if local is not None:
        if conv.mode != mode:
            tx.conversations.upsert(job.account_id, job.conversation_id, now, mode=mode)
        if not passive:
            verdict = policy.before_crew(tx, config, conv, burst, burst_text(burst), now)
            if verdict is not None:
                return _hand_off_now(tx, job, local, mode, verdict, prepare, now)
        _add_shadow(tx, job, conv, burst, history, local, mode, prepare, now)
        if prepare.engine:
            return Work(DECIDE, job, channel=conv.channel, context=(conv, burst, history))
    decision = local
    route: Route | None = None
    envelope_json: str | None = None
    if decision is not None:
        route = Route(decision.crew, prepare.backend(decision.crew).kind, decision.source, decision.reason,
                      decision.confidence, decision.rule, mode)
    if route is not None or job.envelope_json is None:
        envelope_json = dumps(_envelope(job, conv, burst, history, route, prepare))
    crew = route.crew if route is not None else job.crew
    assert crew is not None
    backend = prepare.backend(crew)
    if route is not None:
        _record_route(tx, job, route, now)
    breaker = prepare.breakers.get(backend.breaker_key)
    if not breaker.allow():
        # Deferred without using up an attempt: the back-end is known to be down. The route and
        # envelope are kept, so the next try sends the same body.
        if tx.jobs.store_route(job.id, prepare.owner, route, envelope_json, now):
            tx.jobs.schedule_retry(job.id, prepare.owner, breaker.retry_at(), "circuit breaker open", now)
        return Work(SKIPPED, _routed(job, route, envelope_json), decision=decision, reason="deferred_breaker_open")
    attempt = tx.jobs.start_attempt(job.id, prepare.owner, now, route=route, envelope_json=envelope_json)
    if attempt is None:
        return Work(SKIPPED, job, reason="lease lost")
    return Work(CALL, dataclasses.replace(_routed(job, route, envelope_json), attempts=attempt), channel=conv.channel,
                decision=decision)


def _hand_off_now(tx: Tx, job: Job, local: Decision, mode: str, verdict: policy.HandOff, prepare: Prepare,
                  now: float) -> Work:
    """A policy hand-off (contacts, a customer asking, a budget, business hours): no crew is asked."""
    route = Route(local.crew, prepare.backend(local.crew).kind, local.source, local.reason, local.confidence,
                  local.rule, mode)
    work = _store_handoff(tx, job, route, verdict, prepare, now)
    return dataclasses.replace(work, decision=local) if work.kind == APPLY else work


def _add_shadow(tx: Tx, job: Job, conv: ConversationRow, burst: list[MessageRow], history: list[MessageRow],
                local: Decision, mode: str, prepare: Prepare, now: float) -> None:
    """The rule's shadow crew gets the same messages beside the live crew (its answer is only
    recorded); a rule already in shadow mode needs no second shadow."""
    rule = policy.rule_at(prepare.config, local.rule_index)
    if rule is None or not rule.shadow_crew or rule.shadow_crew == local.crew or mode == SHADOW:
        return
    crew = rule.shadow_crew
    route = Route(crew, prepare.backend(crew).kind, "rules", f"shadow crew of {local.rule}", None, local.rule,
                  SHADOW)
    shadow = dataclasses.replace(job, request_id=str(uuid.uuid4()))
    envelope = _envelope(shadow, conv, burst, history, route, prepare)
    tx.jobs.add_shadow(job, route, dumps(envelope), now, request_id=shadow.request_id)


def _envelope(job: Job, conv: ConversationRow, burst: list[MessageRow], history: list[MessageRow],
              route: Route | None, prepare: Prepare) -> dict[str, Any]:
    if route is not None:
        crew, routing = route.crew, {"crew": route.crew, "source": route.source, "reason": route.reason,
                                     "confidence": route.confidence, "rule": route.rule, "mode": route.mode}
    else:
        crew, routing = job.crew or "", {"crew": job.crew, "source": job.route_source, "reason": job.route_reason,
                                         "confidence": job.route_confidence, "rule": job.rule, "mode": job.mode}
    return build_envelope(job=job, conversation=conv, burst=burst, history=history, crew=crew, route=routing,
                          callback_url=prepare.callback_url)


def _routed(job: Job, route: Route | None, envelope_json: str | None) -> Job:
    if route is None and envelope_json is None:
        return job
    changes: dict[str, Any] = {}
    if route is not None:
        changes.update(crew=route.crew, backend=route.backend, route_source=route.source,
                       route_reason=route.reason, route_confidence=route.confidence, rule=route.rule,
                       mode=route.mode)
    if envelope_json is not None:
        changes["envelope_json"] = envelope_json
    return dataclasses.replace(job, **changes)


def _record_route(tx: Tx, job: Job, route: Route, now: float) -> None:
    """The decision's record; the conversation's ``crew`` column is set when the job finishes
    (one statement less on every claim)."""
    tx.decisions.record(job_id=job.id, account_id=job.account_id, conversation_id=job.conversation_id,
                        crew=route.crew, source=route.source, reason=route.reason, confidence=route.confidence,
                        now=now, rule=route.rule, mode=route.mode)


def _finish(tx: Tx, job: Job, owner: str, state: str, reason: str, now: float) -> None:
    tx.jobs.finish(job.id, owner, state, state, reason, now)


def start_call(tx: Tx, work: Work, prepare: Prepare, decision: Decision) -> Work:
    """After the decision engine answered: route, envelope and attempt in one commit (or a
    hand-off, when the engine asked for one or was not confident enough)."""
    assert work.context is not None
    conv, burst, history = work.context
    job = work.job
    now = time.time()
    config = prepare.config
    mode = policy.mode_for(config, decision.rule_index, conv.inbox_id)
    route = Route(decision.crew, prepare.backend(decision.crew).kind, decision.source, decision.reason,
                  decision.confidence, decision.rule, mode)
    if conv.mode != mode:
        tx.conversations.upsert(job.account_id, job.conversation_id, now, mode=mode)
    if decision.handoff:
        return _store_handoff(tx, job, route, policy.HandOff(
            decision.category, decision.reason or "the decision engine asked for a human"), prepare, now)
    floor = config.routing.min_confidence
    if floor > 0 and decision.confidence is not None and decision.confidence < floor \
            and mode not in PASSIVE_MODES:
        return _store_handoff(tx, job, route, policy.HandOff(
            "low_confidence", f"the decision engine's confidence {decision.confidence:g} is below "
                              f"routing.min_confidence {floor:g}", config.handoff.customer_message), prepare, now)
    envelope_json = dumps(_envelope(job, conv, burst, history, route, prepare))
    owner = prepare.owner
    if not tx.jobs.store_route(job.id, owner, route, envelope_json, now):
        return Work(SKIPPED, job, reason="lease lost")
    _record_route(tx, job, route, now)
    breaker = prepare.breakers.get(prepare.backend(decision.crew).breaker_key)
    if not breaker.allow():
        tx.jobs.schedule_retry(job.id, owner, breaker.retry_at(), "circuit breaker open", now)
        return Work(SKIPPED, _routed(job, route, envelope_json), decision=decision, reason="deferred_breaker_open")
    attempt = tx.jobs.start_attempt(job.id, owner, now)
    if attempt is None:
        return Work(SKIPPED, job, reason="lease lost")
    return Work(CALL, dataclasses.replace(_routed(job, route, envelope_json), attempts=attempt), channel=conv.channel,
                decision=decision)


def _store_handoff(tx: Tx, job: Job, route: Route, verdict: policy.HandOff, prepare: Prepare, now: float) -> Work:
    """A hand-off instead of a crew call: the route is kept (analytics) and the hand-off package is
    stored as the turn's answer, in one commit."""
    owner = prepare.owner
    if not tx.jobs.store_route(job.id, owner, route, None, now):
        return Work(SKIPPED, job, reason="lease lost")
    _record_route(tx, job, route, now)
    routed = _routed(job, route, None)
    action: dict[str, Any] = {"type": "handoff", "category": verdict.category, "reason": verdict.reason}
    if verdict.message:
        action["message"] = verdict.message
    actions = shape(tx, routed, (action,), prepare.config, now, category=verdict.category)
    tx.jobs.store_actions(job.id, owner, actions, now)
    return Work(APPLY, dataclasses.replace(routed, actions=actions), extra={"handoff": verdict.category})


@dataclass(frozen=True, slots=True)
class AttemptRow:
    """A crew attempt's record, written in the same commit as what the attempt produced."""

    job_id: int
    request_id: str
    crew: str
    backend: str
    attempt: int
    started_at: float
    duration: float
    outcome: str
    status_code: int | None
    error: str

    def write(self, tx: Tx) -> None:
        tx.decisions.record_attempt(job_id=self.job_id, request_id=self.request_id, crew=self.crew,
                                    backend=self.backend, attempt=self.attempt, started_at=self.started_at,
                                    duration=self.duration, outcome=self.outcome, status_code=self.status_code,
                                    error=self.error)


def store_answer(tx: Tx, job: Job, owner: str, row: AttemptRow | None, actions: tuple[dict[str, Any], ...],
                 config: Config) -> tuple[Job, _Opening | None] | None:
    """The crew's answer (shaped: sidecar.outbound.shaping), its attempt and the first reply
    step's intent row, in one commit (None: the lease is lost, someone else handles the job now)."""
    now = time.time()
    if row is not None:
        row.write(tx)
    actions = shape(tx, job, actions, config, now)
    if not tx.jobs.store_actions(job.id, owner, actions, now):
        return None
    answered = dataclasses.replace(job, actions=actions)
    # Its actions were only stored now, so none of them can have started yet.
    return answered, open_first_step(tx, answered, now, fresh=True)


def store_async_answer(tx: Tx, request_id: str, actions: tuple[dict[str, Any], ...], config: Config) -> str:
    """An answer that came back on its own (a callback): shaped and stored once. Returns
    ``applied``, ``duplicate`` or ``unknown`` (see Jobs.complete_async)."""
    now = time.time()
    job = tx.jobs.by_request_id(request_id)
    if job is not None and job.actions is None:
        actions = shape(tx, job, actions, config, now)
    return tx.jobs.complete_async(request_id, actions, now)


def store_failure(tx: Tx, job: Job, owner: str, row: AttemptRow | None, reason: str, config: Config) -> Job | None:
    """Final failure: the failure policy's actions (shaped), in one commit with the attempt."""
    if row is not None:
        row.write(tx)
    now = time.time()
    if not tx.jobs.mark_failed(job.id, owner, reason, now):
        return None
    p = config.processing
    actions = failure_actions(reason, note=p.failure_note, handoff=p.failure_handoff, mode=job.mode)
    failed = dataclasses.replace(job, outcome="failed", last_error=reason)
    tx.jobs.store_actions(job.id, owner, shape(tx, failed, actions, config, now, category="crew_failure"), now)
    return tx.jobs.get(job.id)
