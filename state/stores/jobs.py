"""Provides Jobs: the durable work queue, one row per crew turn (a debounced burst of messages).

A job is claimed under a lease (``lease_owner``, ``lease_expires_at``); every write a worker makes
while it handles the job is fenced on that lease (``WHERE lease_owner=? AND state='in_flight'``),
so a worker that lost its lease (paused, crashed, partitioned) can never write again. One
conversation is handled by one worker at a time and in order: a conversation's older open job
always blocks its newer ones. With PostgreSQL several processes claim at once; ``FOR UPDATE SKIP
LOCKED`` makes them take disjoint rows.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from state.errors import StateError
from state.records import Job, QueueStats
from state.sql import Sql, dumps, loads_or, marks
from state.vocabulary import DEAD, DISCARDED, IN_FLIGHT, PENDING, TERMINAL_STATES, WAITING

MAX_BURST_MESSAGES = 50
"""A full open burst is left as it is and the next message starts a new one: appending rewrites
the burst's id list, so an unbounded burst (a chatty sender while the crew is slow, or workers
off) made every intake transaction O(burst)."""

_FENCE = " WHERE id=? AND lease_owner=? AND state='in_flight'"
# A shadow job (``shadow_of`` set) runs beside its live job: it neither waits for the
# conversation's order nor holds anyone up.
_READY = """
    ((j.state='pending' AND j.run_at<=?) OR (j.state='in_flight' AND j.lease_expires_at<?)
     OR (j.state='waiting' AND j.run_at<=?))
    AND (j.shadow_of IS NOT NULL OR (
      NOT EXISTS (SELECT 1 FROM jobs o WHERE o.account_id=j.account_id AND o.conversation_id=j.conversation_id
                  AND o.id<j.id AND o.state IN ('pending','in_flight','waiting') AND o.shadow_of IS NULL)
      AND NOT EXISTS (SELECT 1 FROM jobs o WHERE o.account_id=j.account_id AND o.conversation_id=j.conversation_id
                      AND o.id<>j.id AND o.state='in_flight' AND o.lease_expires_at>=? AND o.shadow_of IS NULL)))
"""


@dataclass(frozen=True, slots=True)
class Route:
    """Which crew answers a job, who decided, and why; and how its answer is used."""

    crew: str
    backend: str
    source: str
    reason: str
    confidence: float | None = None
    rule: str = ""
    """The matching rule's name (or ``rule N``); empty when no rule matched."""
    mode: str = "auto"
    """``auto``, ``draft`` or ``shadow``."""


class Jobs:
    __slots__ = ("sql",)

    def __init__(self, sql: Sql) -> None:
        self.sql = sql

    # -- enqueue (the journal applier) ------------------------------------------------------
    def enqueue(self, account_id: int, conversation_id: int, message_id: int, now: float, debounce: float,
                debounce_max: float, *, new_conversation: bool = False) -> int:
        """Adds a customer message to the conversation's open burst (up to MAX_BURST_MESSAGES) or
        starts a new one; returns the job's id.

        A burst stays open while it has never been sent to a crew, so a retried request always
        carries exactly what the first attempt carried (same Idempotency-Key, same body). The
        append is conditional: a burst claimed meanwhile (another process) is left alone.
        ``new_conversation``: the caller knows there is no burst to look for.
        """
        # The burst's row is locked while its id list is rewritten (PostgreSQL: another process
        # may fold an overtaken burst into it, or claim it, at the same moment; a claim skips it).
        open_burst = None if new_conversation else self.sql.row(
            "SELECT id, message_ids, first_message_at FROM jobs WHERE account_id=? AND conversation_id=? "
            "AND state='pending' AND attempts=0 AND actions IS NULL AND lease_owner IS NULL AND shadow_of IS NULL "
            "ORDER BY id DESC LIMIT 1" + self.sql.dialect.for_update,
            (account_id, conversation_id))
        if open_burst is not None:
            job_id, ids_json, first_at = open_burst
            ids = loads_or(ids_json, [])
            if len(ids) < MAX_BURST_MESSAGES:
                if message_id not in ids:
                    ids.append(message_id)
                run_at = min(first_at + debounce_max, now + debounce)
                if self.sql.execute(
                        "UPDATE jobs SET message_ids=?, run_at=?, updated_at=? WHERE id=? AND state='pending' "
                        "AND attempts=0 AND actions IS NULL AND lease_owner IS NULL",
                        (dumps(ids), run_at, now, job_id)):
                    return int(job_id)
        return int(self.sql.scalar(
            "INSERT INTO jobs(request_id, account_id, conversation_id, state, message_ids, first_message_at, run_at, "
            "created_at, updated_at) VALUES (?,?,?,'pending',?,?,?,?,?) RETURNING id",
            (str(uuid.uuid4()), account_id, conversation_id, dumps([message_id]), now, now + debounce, now, now)))

    def add_shadow(self, live: Job, route: Route, envelope_json: str, now: float, *, request_id: str) -> int | None:
        """A shadow job beside ``live``: the same burst, another crew, its own request id; due now.
        At most one per live job (a job routed twice after a lost lease adds none the second time)."""
        found = self.sql.scalar(
            "INSERT INTO jobs(request_id, account_id, conversation_id, state, message_ids, first_message_at, run_at, "
            "crew, backend, route_source, route_reason, route_confidence, rule, mode, shadow_of, envelope, "
            "created_at, updated_at) SELECT ?,?,?,'pending',?,?,?,?,?,?,?,?,?,'shadow',?,?,?,? "
            "WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE shadow_of=?) RETURNING id",
            (request_id, live.account_id, live.conversation_id, dumps(list(live.message_ids)),
             live.first_message_at, now, route.crew, route.backend, route.source, route.reason, route.confidence,
             route.rule, live.id, envelope_json, now, now, live.id))
        return None if found is None else int(found)

    def add_notice(self, account_id: int, conversation_id: int, actions: Sequence[dict[str, Any]], reason: str,
                   now: float) -> int:
        """A job that only applies ``actions`` (the sidecar's own notes to the team, such as a
        hand-off reminder), through the same exactly-once steps, retries and dead letters as a
        crew's answer; mode ``notice``: posted whoever owns the conversation."""
        return int(self.sql.scalar(
            "INSERT INTO jobs(request_id, account_id, conversation_id, state, message_ids, first_message_at, run_at, "
            "route_source, route_reason, mode, actions, created_at, updated_at) "
            "VALUES (?,?,?,'pending','[]',?,?,'notice',?,'notice',?,?,?) RETURNING id",
            (str(uuid.uuid4()), account_id, conversation_id, now, now, reason, dumps(list(actions)), now, now)))

    def cancel_pending(self, account_id: int, conversation_id: int, reason: str, now: float) -> int:
        """Cancels bursts not yet sent to a crew (a human took the conversation)."""
        return self.sql.execute(
            "UPDATE jobs SET state='cancelled', outcome='cancelled', last_error=?, finished_at=?, updated_at=? "
            "WHERE account_id=? AND conversation_id=? AND state='pending' AND lease_owner IS NULL",
            (reason, now, now, account_id, conversation_id))

    # -- reads -----------------------------------------------------------------------------
    def get(self, job_id: int) -> Job:
        row = self.sql.one("SELECT * FROM jobs WHERE id=?", (job_id,))
        if row is None:
            raise StateError(f"no job {job_id}")
        return Job.from_row(row)

    def by_request_id(self, request_id: str) -> Job | None:
        row = self.sql.one("SELECT * FROM jobs WHERE request_id=?", (request_id,))
        return Job.from_row(row) if row else None

    def newer_open(self, account_id: int, conversation_id: int, job_id: int) -> Job | None:
        """A later burst of the same conversation that has not been answered yet."""
        row = self.sql.one(
            "SELECT * FROM jobs WHERE account_id=? AND conversation_id=? AND id>? AND state='pending' "
            "AND actions IS NULL AND shadow_of IS NULL ORDER BY id LIMIT 1", (account_id, conversation_id, job_id))
        return Job.from_row(row) if row else None

    # -- claims and leases -----------------------------------------------------------------
    def claim(self, owner: str, now: float, lease_seconds: float, limit: int) -> list[Job]:
        """Leases up to ``limit`` ready jobs, at most one per conversation and in order.

        A job is ready when it is pending (or waiting) and due, or in flight under an expired
        lease (its worker died). A conversation's older open job always blocks its newer ones.
        """
        if limit <= 0:
            return []
        lock = " FOR UPDATE OF j SKIP LOCKED" if self.sql.dialect.skip_locked else ""
        rows = self.sql.all(f"SELECT j.* FROM jobs j WHERE {_READY} ORDER BY j.run_at, j.id LIMIT ?{lock}",
                            (now, now, now, now, limit))
        until = now + lease_seconds
        claimed: list[Job] = []
        seen: set[tuple[int, int]] = set()
        for row in rows:
            key = (row["account_id"], row["conversation_id"])
            if key in seen:
                continue
            seen.add(key)
            claimed.append(row["id"])
            row.update(state=IN_FLIGHT, lease_owner=owner, lease_expires_at=until, updated_at=now)
        if not claimed:
            return []
        self.sql.execute(
            f"UPDATE jobs SET state='in_flight', lease_owner=?, lease_expires_at=?, updated_at=? "
            f"WHERE id IN ({', '.join('?' * len(claimed))})", (owner, until, now, *claimed))
        ids = set(claimed)
        return [Job.from_row(r) for r in rows if r["id"] in ids]

    def renew_leases(self, owner: str, now: float, until: float) -> int:
        """Extends every live lease ``owner`` holds (one statement for all of a worker's jobs).
        An expired lease is not renewed: another worker may have taken the job already."""
        return self.sql.execute(
            "UPDATE jobs SET lease_expires_at=? WHERE lease_owner=? AND state='in_flight' AND lease_expires_at>=?",
            (until, owner, now))

    def expire_leases(self) -> int:
        """Ends every lease (after a restore the workers that held them are gone): the next worker
        takes those jobs over at once, as after a crash."""
        return self.sql.execute("UPDATE jobs SET lease_expires_at=0 WHERE state='in_flight'")

    def extend_lease(self, job_id: int, owner: str, until: float) -> bool:
        return self._fenced("UPDATE jobs SET lease_expires_at=?", (until,), job_id, owner)

    def still_held(self, job_id: int, owner: str, now: float) -> bool:
        """Whether ``owner`` still holds the job's lease; the row stays locked until the commit
        (PostgreSQL), so no other process can take the job while this transaction decides."""
        return self._fenced("UPDATE jobs SET updated_at=?", (now,), job_id, owner)

    def release_leases(self, owner: str, now: float) -> int:
        """Hands back every job this worker holds (graceful shutdown)."""
        return self.sql.execute(
            "UPDATE jobs SET state='pending', lease_owner=NULL, lease_expires_at=NULL, run_at=?, updated_at=? "
            "WHERE lease_owner=? AND state='in_flight'", (now, now, owner))

    def _fenced(self, sql: str, params: Sequence[Any], job_id: int, owner: str) -> bool:
        """Runs an update only if ``owner`` still holds the job's lease."""
        return self.sql.execute(sql + _FENCE, (*params, job_id, owner)) == 1

    # -- the crew step (fenced) ------------------------------------------------------------
    def store_route(self, job_id: int, owner: str, route: Route | None, envelope_json: str | None,
                    now: float) -> bool:
        """Stores a fresh route and/or envelope without counting an attempt (a deferral)."""
        sets, params = self._route_sets(route, envelope_json)
        if not sets:
            return self._fenced("UPDATE jobs SET updated_at=?", (now,), job_id, owner)
        return self._fenced(f"UPDATE jobs SET {sets}, updated_at=?", (*params, now), job_id, owner)

    def start_attempt(self, job_id: int, owner: str, now: float, *, route: Route | None = None,
                      envelope_json: str | None = None) -> int | None:
        """Stores what is new (route, envelope) and counts one more crew attempt, in one
        statement; returns the attempt's number, or None if the lease is lost."""
        sets, params = self._route_sets(route, envelope_json)
        attempts = self.sql.scalar(
            f"UPDATE jobs SET {sets + ', ' if sets else ''}attempts=attempts+1, updated_at=?{_FENCE} RETURNING attempts",
            (*params, now, job_id, owner))
        return None if attempts is None else int(attempts)

    @staticmethod
    def _route_sets(route: Route | None, envelope_json: str | None) -> tuple[str, list[Any]]:
        sets: list[str] = []
        params: list[Any] = []
        if route is not None:
            sets.append("crew=?, backend=?, route_source=?, route_reason=?, route_confidence=?, rule=?, mode=?")
            params += [route.crew, route.backend, route.source, route.reason, route.confidence, route.rule,
                       route.mode]
        if envelope_json is not None:
            sets.append("envelope=?")
            params.append(envelope_json)
        return ", ".join(sets), params

    def store_actions(self, job_id: int, owner: str, actions: Sequence[dict[str, Any]], now: float) -> bool:
        return self._fenced("UPDATE jobs SET actions=?, updated_at=?", (dumps(list(actions)), now), job_id, owner)

    def set_waiting(self, job_id: int, owner: str, *, run_at: float, deadline_at: float, external_id: str,
                    now: float) -> bool:
        """Parks a job until its asynchronous answer arrives, its next poll (``run_at``), or its
        deadline. ``external_id`` is never NULL afterwards: it marks "the crew accepted"."""
        # The answer may already be here: a fast crew can call back before we park the job.
        return self._fenced(
            "UPDATE jobs SET state=CASE WHEN actions IS NULL THEN 'waiting' ELSE 'pending' END, "
            "run_at=CASE WHEN actions IS NULL THEN ? ELSE ? END, deadline_at=?, external_id=?, "
            "lease_owner=NULL, lease_expires_at=NULL, updated_at=?",
            (min(run_at, deadline_at), now, deadline_at, external_id, now), job_id, owner)

    def count_apply_attempt(self, job_id: int, owner: str, now: float) -> int | None:
        count = self.sql.scalar(
            f"UPDATE jobs SET apply_attempts=apply_attempts+1, updated_at=?{_FENCE} RETURNING apply_attempts",
            (now, job_id, owner))
        return None if count is None else int(count)

    def mark_failed(self, job_id: int, owner: str, reason: str, now: float) -> bool:
        """Records that the crew step gave up; the failure policy's actions follow."""
        return self._fenced("UPDATE jobs SET outcome='failed', last_error=?, updated_at=?", (reason, now),
                            job_id, owner)

    def schedule_retry(self, job_id: int, owner: str, run_at: float, error: str, now: float) -> bool:
        return self._fenced(
            "UPDATE jobs SET state='pending', run_at=?, last_error=?, lease_owner=NULL, lease_expires_at=NULL, "
            "updated_at=?", (run_at, error, now), job_id, owner)

    def finish(self, job_id: int, owner: str, state: str, outcome: str, error: str, now: float) -> bool:
        if state not in TERMINAL_STATES:
            raise StateError(f"not a terminal state: {state}")
        return self._fenced(
            "UPDATE jobs SET state=?, outcome=?, last_error=?, lease_owner=NULL, lease_expires_at=NULL, "
            "finished_at=?, updated_at=?", (state, outcome, error, now, now), job_id, owner)

    def fold_into(self, older: Job, newer: Job, now: float) -> None:
        """Moves an overtaken burst's messages into the newer burst, so the next crew request
        answers all of them at once.

        The merged burst keeps only the newest MAX_BURST_MESSAGES: a customer who keeps
        overtaking every answer must not grow one request without bound (the older messages
        still travel as history)."""
        # The newer burst's ids as they are now, locked (the applier may be appending to it from
        # another process; ``newer`` was read earlier without a lock).
        current = self.sql.scalar(f"SELECT message_ids FROM jobs WHERE id=?{self.sql.dialect.for_update}",
                                  (newer.id,))
        newer_ids = loads_or(current, list(newer.message_ids)) if current is not None else list(newer.message_ids)
        ids = list(dict.fromkeys([*older.message_ids, *newer_ids]))[-MAX_BURST_MESSAGES:]
        least = self.sql.dialect.least
        self.sql.execute(
            f"UPDATE jobs SET message_ids=?, first_message_at={least}(first_message_at, ?), updated_at=? WHERE id=?",
            (dumps(ids), older.first_message_at, now, newer.id))

    # -- asynchronous answers (callbacks, polls) ----------------------------------------------
    def complete_async(self, request_id: str, actions: Sequence[dict[str, Any]], now: float) -> str:
        """Stores an asynchronous crew answer: ``applied``, ``duplicate`` or ``unknown``.

        Conditional in one statement, so two callbacks racing (two replicas) store it once."""
        changed = self.sql.execute(
            "UPDATE jobs SET actions=?, state=CASE WHEN state='waiting' THEN 'pending' ELSE state END, run_at=?, "
            "updated_at=? WHERE request_id=? AND actions IS NULL AND state NOT IN "
            "('done','dead','superseded','cancelled','discarded')",
            (dumps(list(actions)), now, now, request_id))
        if changed:
            return "applied"
        return "duplicate" if self.sql.scalar("SELECT 1 FROM jobs WHERE request_id=?", (request_id,)) else "unknown"

    def poll_now(self, request_id: str, now: float) -> bool:
        """Makes a job waiting for an asynchronous answer due now (its back-end said "done")."""
        return self.sql.execute("UPDATE jobs SET run_at=?, updated_at=? WHERE request_id=? AND state='waiting'",
                                (now, now, request_id)) == 1

    # -- queue figures ---------------------------------------------------------------------
    def stats(self, now: float | None = None) -> QueueStats:
        now = time.time() if now is None else now
        counts = {r["state"]: r["n"] for r in self.sql.all(
            "SELECT state, count(*) AS n FROM jobs WHERE state IN ('pending','in_flight','waiting','dead') "
            "GROUP BY state")}
        oldest = self.sql.scalar(
            "SELECT min(first_message_at) FROM jobs WHERE state IN ('pending','in_flight','waiting')")
        return QueueStats(pending=counts.get(PENDING, 0), in_flight=counts.get(IN_FLIGHT, 0),
                          waiting=counts.get(WAITING, 0), dead=counts.get(DEAD, 0),
                          oldest_pending_age=(now - oldest) if oldest is not None else None)

    def next_due_at(self) -> float | None:
        """When the next job could be claimed, ignoring jobs blocked behind an older job of their
        conversation (those become claimable when that job finishes)."""
        return self.sql.scalar(
            "SELECT min(j.run_at) FROM jobs j WHERE j.state IN ('pending','waiting') AND (j.shadow_of IS NOT NULL "
            "OR NOT EXISTS (SELECT 1 FROM jobs o WHERE o.account_id=j.account_id AND o.conversation_id=j.conversation_id "
            "AND o.id<j.id AND o.state IN ('pending','in_flight','waiting') AND o.shadow_of IS NULL))")

    def for_conversation(self, account_id: int, conversation_id: int, limit: int = 200) -> list[Job]:
        return [Job.from_row(r) for r in self.sql.all(
            "SELECT * FROM jobs WHERE account_id=? AND conversation_id=? ORDER BY id DESC LIMIT ?",
            (account_id, conversation_id, limit))]

    # -- erasure ------------------------------------------------------------------------------
    def erase(self, account_id: int, conversation_id: int, reason: str, now: float) -> tuple[int, int, int]:
        """Forgets what a conversation's jobs carried (envelope, crew answer, error text). Its open
        jobs are cancelled (there is nothing left to answer) and its dead letters discarded
        (nothing left to retry). Returns (jobs, cancelled, discarded)."""
        where = " WHERE account_id=? AND conversation_id=?"
        ids = (account_id, conversation_id)
        cancelled = self.sql.execute(
            "UPDATE jobs SET state='cancelled', outcome='cancelled', finished_at=?, lease_owner=NULL, "
            f"lease_expires_at=NULL, updated_at=?{where} AND state IN ('pending','in_flight','waiting')",
            (now, now, *ids))
        discarded = self.sql.execute(f"UPDATE jobs SET state='{DISCARDED}', updated_at=?{where} AND state='dead'",
                                     (now, *ids))
        self.sql.execute(f"UPDATE crew_attempts SET error='' WHERE job_id IN (SELECT id FROM jobs{where})", ids)
        jobs = self.sql.execute(f"UPDATE jobs SET envelope=NULL, actions=NULL, last_error=?, updated_at=?{where}",
                                (reason, now, *ids))
        return jobs, cancelled, discarded

    # -- retention ------------------------------------------------------------------------------
    def prune_finished(self, before: float, limit: int) -> int:
        """Deletes up to ``limit`` jobs that finished before ``before`` (answered, superseded,
        cancelled or discarded), with their crew attempts and applied actions. Dead letters and
        open jobs are never deleted."""
        # Only finished jobs have a finished_at (a retried dead letter loses its own), so "not dead"
        # is every prunable state; written this way the finished_at index drives the scan.
        ids = self.sql.column(
            "SELECT id FROM jobs WHERE finished_at<? AND state<>'dead' ORDER BY finished_at LIMIT ?", (before, limit))
        if not ids:
            return 0
        where = f"IN ({marks(len(ids))})"
        self.sql.execute(f"DELETE FROM crew_attempts WHERE job_id {where}", ids)
        self.sql.execute(f"DELETE FROM actions_applied WHERE job_id {where}", ids)
        return self.sql.execute(f"DELETE FROM jobs WHERE id {where}", ids)

    def oldest(self) -> float | None:
        """When the oldest job kept was created (rowid order is creation order)."""
        return self.sql.scalar("SELECT created_at FROM jobs ORDER BY id LIMIT 1")

    # -- dead letters (console, admin) --------------------------------------------------------
    def dead(self, limit: int = 200, offset: int = 0) -> list[Job]:
        return [Job.from_row(r) for r in self.sql.all(
            "SELECT * FROM jobs WHERE state='dead' ORDER BY finished_at DESC, id DESC LIMIT ? OFFSET ?",
            (limit, offset))]

    def retry_dead(self, job_id: int, now: float) -> bool:
        """Puts a dead job back in the queue with fresh attempts."""
        return self.sql.execute(
            "UPDATE jobs SET state='pending', run_at=?, attempts=0, lease_owner=NULL, lease_expires_at=NULL, "
            "outcome='', finished_at=NULL, updated_at=? WHERE id=? AND state='dead'", (now, now, job_id)) == 1

    def discard_dead(self, job_id: int, now: float) -> bool:
        return self.sql.execute(f"UPDATE jobs SET state='{DISCARDED}', updated_at=? WHERE id=? AND state='dead'",
                                (now, job_id)) == 1
