"""Provides ReplyPoster: a crew's answer applied in Chatwoot, exactly once per action.

An answer is expanded into deterministic steps (:mod:`sidecar.outbound.steps`: a hand-off becomes
owner, message, note, status, assignment, labels). Each step's intent row is committed (synchronous=FULL) *before* its Chatwoot call, so
after a crash or a dropped connection "maybe sent" can be told from "never sent", and evidence
(the echo webhook, or the message list) is looked for before posting again.

Transactions: the step's completion (its row done, local state updated) needs no outside call,
so it is committed together with the next write (the next step's intent row, or the job's
finish). The first step's intent row is committed by the queue worker together with the crew's
answer (:func:`open_step` inside its unit), so a plain reply costs two commits: answer + intent,
then completion + finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from sidecar.config import Config
from sidecar.inbound import ownership
from sidecar.inbound.payload import content_hash
from sidecar.ops.logs import get_logger, log_event
from sidecar.ops.metrics import Metrics
from sidecar.ops.outcomes import count_answered, record
from sidecar.outbound.chatwoot import ChatwootClient, ChatwootError
from sidecar.outbound.steps import Step, expand
from sidecar.queue.retry import retry_delay
from state import ActionRecord, Job, StateService, Tx
from state.vocabulary import AUTO, DRAFT, NOTICE, PASSIVE_MODES, SHADOW

log = get_logger()


def _gate(tx: Tx, job: Job, idx: int, now: float, fresh: bool = False) -> tuple[str, str] | None:
    """Why this answer must not be posted any more (None: go ahead). ``fresh``: no step of this
    answer has started yet (it was stored in this very transaction)."""
    conv = tx.conversations.get(job.account_id, job.conversation_id)
    if conv is None:
        return "cancelled", "conversation unknown"
    if job.mode not in PASSIVE_MODES:  # a draft is for the agents, whoever owns the conversation
        owns, why = ownership.bot_owns(conv)
        if not owns:
            return "cancelled", f"not posted: {why}"
    if conv.status == "resolved":
        return "cancelled", "not posted: conversation resolved while the crew was working"
    if idx == 0 and (fresh or tx.effects.get(job.id, 0) is None):
        newer = tx.jobs.newer_open(job.account_id, job.conversation_id, job.id)
        if newer is not None:
            tx.jobs.fold_into(job, newer, now)
            return "superseded", f"overtaken by a newer customer message (job {newer.id})"
    return None


@dataclass(frozen=True, slots=True)
class _Opening:
    """What the transaction before a step's Chatwoot call found."""

    verdict: tuple[str, str] | None = None
    """Set when the answer must not be posted any more: (final state, reason)."""
    earlier: ActionRecord | None = None
    """The step's row from an earlier try (done, or a message that may have been posted);
    None when this transaction committed the step's intent row."""
    lost: bool = False
    """This worker no longer holds the job's lease (it was paused past it and another process
    took the job): it must not call Chatwoot for it."""


Write = Callable[[Tx], Any]
_APPLY_WAIT = 0.5
"""Seconds a job whose message may have been posted waits for received webhooks to be applied."""
"""A write to commit later, together with the next one (see ActionApplier.apply)."""


def _open_step(tx: Tx, job: Job, idx: int, step: Step, gated: bool, completed: Write | None,
               now: float, fresh: bool = False, owner: str | None = None) -> _Opening:
    """Everything before step ``idx``'s Chatwoot call, in one transaction: the previous step's
    completion, the gate, and the step's intent row (committed before the call). ``owner``: the
    lease this worker must still hold (fencing; locks the job's row until the commit)."""
    if completed is not None:
        completed(tx)
    if owner is not None and not tx.jobs.still_held(job.id, owner, now):
        return _Opening(lost=True)
    if gated:
        verdict = _gate(tx, job, idx, now, fresh)
        if verdict is not None:
            return _Opening(verdict=verdict)
    record = None if fresh else tx.effects.get(job.id, idx)
    if record is not None and (record.state == "done" or step.op == "message"):
        return _Opening(earlier=record)  # a started message needs evidence before it is posted again
    digest = content_hash(step.args["content"]) if step.op == "message" else ""
    tx.effects.begin(job.id, idx, step.op, job.account_id, job.conversation_id, digest, now)
    return _Opening()


@dataclass(frozen=True, slots=True)
class Plan:
    """A job's answer as steps, and where the gate applies."""

    steps: list[Step]
    first_self_change: int

    @classmethod
    def of(cls, job: Job) -> Plan:
        steps = expand(job.actions or (), job.mode)
        return cls(steps, next((i for i, s in enumerate(steps) if s.changes_ownership), len(steps)))

    def gated(self, job: Job, idx: int) -> bool:
        # A notice (the sidecar's own note to the team) is posted whoever owns the conversation.
        return job.mode != NOTICE and job.outcome != "failed" and idx <= self.first_self_change


def open_first_step(tx: Tx, job: Job, now: float, *, fresh: bool = False) -> _Opening | None:
    """The first step's opening, for the unit that stores the crew's answer (None: no steps)."""
    plan = Plan.of(job)
    if not plan.steps:
        return None
    return _open_step(tx, job, 0, plan.steps[0], plan.gated(job, 0), None, now, fresh)


class ReplyPoster:
    """Applies a job's stored actions in Chatwoot, then finishes the job (done, dead or cancelled)."""

    def __init__(self, *, config: Callable[[], Config], state: StateService, chatwoot: ChatwootClient,
                 metrics: Metrics, worker_id: str, self_user_ids: set[int], finished: Callable[[], None]) -> None:
        self._config = config
        self._state = state
        self._chatwoot = chatwoot
        self._metrics = metrics
        self._worker_id = worker_id
        self._self_user_ids = self_user_ids
        """Chatwoot user ids the sidecar posts as (learned from create answers; shared)."""
        self._finished = finished
        """Called after a job ended (a newer burst of its conversation may be claimable now)."""

    async def apply(self, job: Job, first: _Opening | None = None, *, started: float | None = None) -> str:
        """Applies the job's actions; ``first`` is step 0's opening when the caller already
        committed it. Returns how the job ended (``done``, ``dead``, ``cancelled``, ``superseded``,
        ``parked`` or ``lost``)."""
        failed = job.outcome == "failed"
        plan = Plan.of(job)
        completed: Write | None = None
        for idx, step in enumerate(plan.steps):
            if idx > 0 and "pause" in step.args:
                # A part of a split answer: the previous part's completion first, then a pause
                # like a person typing (before this part's intent row: a crash during the pause
                # leaves nothing in doubt).
                if completed is not None:
                    await self._state.write(completed)
                    completed = None
                await self._pause(job, step)
            if idx == 0 and first is not None:
                opening = first
            else:
                opening = await self._state.write(_open_step, job, idx, step, plan.gated(job, idx), completed,
                                                  time.time(), durable=True, owner=self._worker_id)
            completed = None
            if opening.lost:
                log_event(log, "job.lease_lost", level=30, job=job.id, step=idx)
                self._finished()
                return "lost"
            if opening.verdict is not None:
                return await self._finish(job, *opening.verdict)
            if opening.earlier is not None and opening.earlier.state == "done":
                continue
            try:
                completed = await self._run_step(job, idx, step, opening.earlier)
            except ChatwootError as exc:
                return await self._chatwoot_failed(job, exc)
            if completed is None:
                return "parked"  # until the evidence question can be answered
        if failed:
            return await self._finish(job, "dead", job.last_error or "crew failed", completed)
        return await self._finish(job, "done", "answered", completed, started=started)

    async def _pause(self, job: Job, step: Step) -> None:
        typing = step.args.get("typing") and self._config().chatwoot.typing_indicator
        if typing:
            with contextlib.suppress(ChatwootError):
                await self._chatwoot.typing(job.account_id, job.conversation_id, True)
        await asyncio.sleep(step.args["pause"])
        if typing:
            with contextlib.suppress(ChatwootError):
                await self._chatwoot.typing(job.account_id, job.conversation_id, False)

    async def _run_step(self, job: Job, idx: int, step: Step, earlier: ActionRecord | None) -> Write | None:
        """Makes the step's Chatwoot call (its intent row is committed); returns the write that
        completes it, or None if the job was parked."""
        if step.op == "message":
            return await self._post(job, idx, step, earlier)
        chatwoot = self._chatwoot
        acct, conv = job.account_id, job.conversation_id
        labels: list[str] = []
        if step.op == "status":
            await chatwoot.toggle_status(acct, conv, step.args["status"])
            log_event(log, "chatwoot.status_changed", conversation=f"{acct}/{conv}", job=job.id,
                      status=step.args["status"])
        elif step.op == "assign":
            await chatwoot.assign(acct, conv, assignee_id=step.args["assignee_id"], team_id=step.args["team_id"])
        elif step.op == "labels":
            current = await chatwoot.get_labels(acct, conv)
            if current is None:
                stored = await self._state.read(lambda tx: tx.conversations.get(acct, conv))
                current = list(stored.labels) if stored else []
            labels = list(dict.fromkeys([*current, *step.args["add"]]))
            await chatwoot.set_labels(acct, conv, labels)
        detail = str(step.args)[:300]

        def complete(tx: Tx) -> None:
            now = time.time()
            if step.op == "owner":  # local only: committed before the next step's Chatwoot call
                tx.conversations.set_owner(acct, conv, step.args["owner"], step.args["reason"], now)
                handoff = step.args.get("handoff")
                if handoff:
                    _record_handoff(tx, job, handoff, now)
            elif step.op == "labels":
                tx.conversations.upsert(acct, conv, now, labels=labels)
            tx.effects.finish(job.id, idx, chatwoot_message_id=None, detail=detail, now=now)

        return complete

    async def _post(self, job: Job, idx: int, step: Step, earlier: ActionRecord | None) -> Write | None:
        """A message step; a row from an earlier try means it may have been posted already."""
        acct, conv = job.account_id, job.conversation_id
        content, private = step.args["content"], step.args["private"]
        digest = content_hash(content)
        if earlier is not None:
            verdict = await self._already_posted(job, earlier, content, private)
            if verdict is None:
                # Until the grace ends, or a moment while webhooks received within it are applied.
                await self._park(job, max(earlier.started_at + self._echo_grace(), time.time() + _APPLY_WAIT),
                                 "waiting for Chatwoot's echo of a message whose create call dropped")
                return None
            if verdict is not False:
                found_id = verdict if type(verdict) is int else None
                return partial(_record_message, job=job, idx=idx, message_id=found_id, content=content,
                               private=private, digest=digest)
            # Certainly not posted: a fresh intent row before posting again.
            await self._state.write(lambda tx: tx.effects.begin(job.id, idx, "message", acct, conv, digest,
                                                                time.time()), durable=True)
        try:
            answer = await self._chatwoot.create_message(acct, conv, content, private=private)
        except ChatwootError as exc:
            if not exc.ambiguous:
                # Chatwoot answered "not created" (429, 4xx, 500): the next try posts again
                # without waiting for evidence.
                await self._state.write(lambda tx: tx.effects.forget(job.id, idx))
            raise
        self._learn_identity(answer)
        message_id = answer.get("id") if isinstance(answer.get("id"), int) else None
        if log.isEnabledFor(logging.DEBUG):
            log_event(log, "chatwoot.message_posted", level=logging.DEBUG, conversation=f"{acct}/{conv}",
                      job=job.id, private=private, message_id=message_id, chars=len(content))
        return partial(_record_message, job=job, idx=idx, message_id=message_id, content=content,
                       private=private, digest=digest)

    def _echo_grace(self) -> float:
        # With an agent-bot token we cannot list messages, so the echo webhook is the evidence
        # that a message whose create call dropped was stored; we wait this long for it.
        return self._config().processing.echo_grace_seconds

    async def _already_posted(self, job: Job, record: ActionRecord, content: str, private: bool) -> int | bool | None:
        """After an interrupted create: the message id if it was stored, False if it certainly
        was not, None if we cannot tell yet."""
        since = record.started_at - 5
        grace = self._echo_grace()
        def look(tx: Tx) -> tuple[int | bool | None, float | None]:
            return (tx.messages.own_message_seen(job.account_id, job.conversation_id, record.content_hash, since),
                    tx.journal.oldest_unapplied_at())

        seen, unapplied_since = await self._state.read(look)
        if seen is not None:
            return seen
        # The grace is for the echo's *arrival*: an echo received in time but not applied yet
        # (another process applies the journal, late on a loaded machine) is still evidence.
        echo_may_wait = unapplied_since is not None and unapplied_since <= record.started_at + grace
        try:
            listed = await self._chatwoot.list_messages(job.account_id, job.conversation_id)
        except ChatwootError:
            listed = None if echo_may_wait or time.time() < record.started_at + grace else []
            if listed is None:
                return None
        if listed is not None:
            for message in listed:
                if (isinstance(message, dict) and (message.get("content") or "").strip() == content.strip()
                        and bool(message.get("private")) == private and message.get("message_type") in (1, "outgoing")
                        and _epoch(message.get("created_at")) >= since - 60):
                    return message["id"] if isinstance(message.get("id"), int) else True
            return False
        if echo_may_wait or time.time() < record.started_at + grace:
            return None
        return False

    def _learn_identity(self, answer: dict[str, Any]) -> None:
        sender = answer.get("sender")
        if isinstance(sender, dict) and sender.get("type") == "user" and isinstance(sender.get("id"), int):
            self._self_user_ids.add(sender["id"])

    async def _park(self, job: Job, until: float, why: str) -> None:
        if not await self._state.write(
                lambda tx: tx.jobs.schedule_retry(job.id, self._worker_id, until, why, time.time())):
            log_event(log, "job.lease_lost", level=30, job=job.id, step="park")

    async def _chatwoot_failed(self, job: Job, exc: ChatwootError) -> str:
        config = self._config()
        count = await self._state.write(lambda tx: tx.jobs.count_apply_attempt(job.id, self._worker_id, time.time()))
        if count is None:
            log_event(log, "job.lease_lost", level=30, job=job.id, step="chatwoot_failed")
            self._finished()
            return "lost"
        log_event(log, "chatwoot.call_failed", level=30, job=job.id,
                  conversation=f"{job.account_id}/{job.conversation_id}", error=str(exc), attempt=count)
        if not exc.retryable or count >= config.processing.max_attempts:
            return await self._finish(job, "dead", f"Chatwoot kept failing: {exc}")
        delay = retry_delay(count, base=config.processing.retry_base_seconds,
                            maximum=config.processing.retry_max_seconds, retry_after=exc.retry_after)
        await self._park(job, time.time() + delay, str(exc))
        return "parked"

    async def _finish(self, job: Job, state: str, reason: str, completed: Write | None = None, *,
                      started: float | None = None) -> str:
        """Ends the job; ``completed`` (the last step's completion) is committed with it."""
        outcome = {"done": "answered", "dead": "dead_letter"}.get(state, state)
        owner = self._worker_id

        answered = state == "done" and job.mode == AUTO and job.outcome != "failed" and any(
            a.get("type") == "reply" for a in job.actions or ())
        if state == "done" and job.mode in PASSIVE_MODES:
            outcome = job.mode  # a draft or a shadow answer, not an answer to the customer

        def finish(tx: Tx) -> bool:
            if completed is not None:
                completed(tx)
            now = time.time()
            ok = tx.jobs.finish(job.id, owner, state, outcome, "" if state == "done" else reason, now)
            if ok and state == "done":
                _record_outcome(tx, job, answered, now)
            return ok

        ok = await self._state.write(finish)
        if not ok:
            # Paused past the lease during the last step: another worker took the job and ended
            # it (the step's intent row told it what was already done).
            log_event(log, "job.lease_lost", level=30, job=job.id, step="finish")
        if ok and answered:
            count_answered(self._metrics, crew=job.crew or "", rule=job.rule,
                           latency=max(0.0, time.time() - job.first_message_at))
        if ok:
            if state == "dead":
                self._metrics.inc("connector_jobs_dead_lettered_total")
            elapsed = round((time.monotonic() - started) * 1000, 1) if started is not None else None
            log_event(log, f"job.{state}", job=job.id, conversation=f"{job.account_id}/{job.conversation_id}",
                      crew=job.crew, route=job.route_source, attempts=job.attempts or None, ms=elapsed,
                      reason=None if state == "done" else reason)
        self._finished()
        return state if ok else "lost"


def _record_handoff(tx: Tx, job: Job, handoff: dict[str, Any], now: float) -> None:
    crew, rule, category = handoff.get("crew") or job.crew or "", handoff.get("rule") or job.rule, handoff["category"]
    tx.handoffs.record(account_id=job.account_id, conversation_id=job.conversation_id, job_id=job.id,
                       category=category, reason=handoff["reason"], crew=crew, rule=rule, team_id=handoff["team_id"],
                       now=now, waiting_since=handoff.get("waiting_since"))
    record(tx, "handoff", account_id=job.account_id, conversation_id=job.conversation_id, crew=crew, rule=rule,
           now=now, detail=category)


def _record_outcome(tx: Tx, job: Job, answered: bool, now: float) -> None:
    """A finished turn's outcome event: answered (with its latency), a draft, or a shadow answer."""
    where = {"account_id": job.account_id, "conversation_id": job.conversation_id, "crew": job.crew or "",
             "rule": job.rule, "now": now}
    if answered:
        # The counters follow the commit (count_answered): this is the hot path.
        tx.outcomes.record("answered", value=max(0.0, now - job.first_message_at), **where)
    elif job.mode == DRAFT:
        record(tx, "draft", **where)
    elif job.mode == SHADOW:
        text = " ".join(str(a.get("content") or a.get("message") or "") for a in job.actions or ()
                        if a.get("type") in ("reply", "handoff")).strip()
        kinds = ",".join(sorted({str(a.get("type")) for a in job.actions or ()}))
        record(tx, "shadow", value=None, detail=(text or f"[{kinds or 'no actions'}]")[:500], **where)


def _record_message(tx: Tx, *, job: Job, idx: int, message_id: int | None, content: str, private: bool,
                    digest: str) -> None:
    now = time.time()
    tx.effects.finish(job.id, idx, chatwoot_message_id=message_id, detail="posted", now=now)
    role = "note" if private else "bot"
    tx.messages.insert(
        account_id=job.account_id, conversation_id=job.conversation_id, message_id=message_id, role=role,
        sender_type="connector", sender_id=None, content=content, content_type="text", attachments=[],
        private=private, content_hash=digest, created_at=now, job_id=job.id)
    # The bot's reply shows as the preview but does not move the conversation in the console's
    # "most recently active" order (the customer's or agent's last message does): last_message_at
    # is in four indexes, and every answered message would rewrite them all once more.
    crew = {"crew": job.crew, "rule": job.rule} if job.crew else {}
    tx.conversations.upsert(job.account_id, job.conversation_id, now, last_message_preview=content[:200],
                            last_message_role=role, **crew)


def _epoch(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return 0.0
