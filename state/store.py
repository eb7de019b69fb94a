"""Provides Store (connection, transactions, small documents) and Tx (queue and intake writes)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from state.db import apply_migrations, check_schema, connect_reader, connect_writer
from state.errors import StateError, StorageUnavailable
from state.models import ActionRecord, ConversationRow, Job, MessageRow, PendingDelivery
from state.queries import Reads

# Terminal states never change again except by an operator (retry / discard a dead letter).
TERMINAL_STATES = ("done", "dead", "superseded", "cancelled", "discarded")
OPEN_STATES = ("pending", "in_flight", "waiting")
MAX_BURST_MESSAGES = 50
"""A full open burst is left as it is and the next message starts a new one: appending
rewrites the burst's id list, so an unbounded burst (a chatty sender while the crew is slow,
or workers off) made every intake transaction O(burst) - measured in bench/ANALYSIS.md."""


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class Store(Reads):
    """The connector's SQLite state. One writer (the sidecar), any number of readers."""

    def __init__(self, path: str, *, readonly: bool = False, migrate: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._connect()
        if migrate and not readonly:
            try:
                apply_migrations(self._conn)  # type: ignore[arg-type]
            except sqlite3.Error as exc:
                raise StorageUnavailable(f"cannot migrate {path}: {exc}") from exc
        check_schema(self.conn)

    # -- connection management -------------------------------------------------------
    def _connect(self) -> None:
        self._conn = connect_reader(self.path) if self.readonly else connect_writer(self.path)

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            # The previous connection failed (disk full, read-only file): try again so the
            # sidecar recovers by itself once storage is back.
            self._connect()
        assert self._conn is not None
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _drop_connection(self) -> None:
        try:
            if self._conn is not None:
                self._conn.close()
        except sqlite3.Error:
            pass
        self._conn = None

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """Runs a write transaction (BEGIN IMMEDIATE ... COMMIT); storage errors become
        StorageUnavailable and leave nothing half-written."""
        if self.readonly:
            raise StateError("this store was opened read-only")
        with self._lock:
            conn = self._begin()
            try:
                yield Tx(conn)
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._abort(conn, drop=True)
                raise StorageUnavailable(str(exc)) from exc
            except BaseException:
                self._abort(conn, drop=False)
                raise

    def _begin(self) -> sqlite3.Connection:
        """BEGIN IMMEDIATE on the writer connection (StorageUnavailable if that fails)."""
        try:
            conn = self.conn
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._drop_connection()
            raise StorageUnavailable(str(exc)) from exc
        return conn

    def _abort(self, conn: sqlite3.Connection, *, drop: bool) -> None:
        """Rolls back; after a storage error (``drop``) or a failed rollback the connection is
        reopened on next use, so the sidecar recovers once storage does."""
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            drop = True
        if drop:
            self._drop_connection()

    def transaction_group(self, units: Sequence[Callable[[Tx], Any]]) -> list[tuple[bool, Any]]:
        """Group commit: runs several independent write units in ONE transaction, one COMMIT
        (one fsync) for all of them.

        Each unit runs inside its own SAVEPOINT, so a unit that raises is undone alone and
        only that unit gets its exception (an ``sqlite3.Error`` becomes StorageUnavailable).
        Returns, per unit and in order, ``(True, result)`` or ``(False, exception)``, and only
        after the COMMIT has returned: no unit is ever reported done before it is durable. If
        BEGIN, a savepoint rollback or the COMMIT fails, every unit gets StorageUnavailable and
        nothing of the group is written.
        """
        if self.readonly:
            raise StateError("this store was opened read-only")

        def all_failed(exc: BaseException) -> list[tuple[bool, Any]]:
            return [(False, StorageUnavailable(str(exc))) for _ in units]

        with self._lock:
            try:
                conn = self._begin()
            except StorageUnavailable as exc:
                return [(False, exc) for _ in units]
            outcomes: list[tuple[bool, Any]] = []
            try:
                tx = Tx(conn)
                for unit in units:
                    conn.execute("SAVEPOINT unit")
                    try:
                        result = unit(tx)
                    except Exception as exc:  # noqa: BLE001 - handed to that unit's caller
                        conn.execute("ROLLBACK TO unit")
                        conn.execute("RELEASE unit")
                        failure = StorageUnavailable(str(exc)) if isinstance(exc, sqlite3.Error) else exc
                        outcomes.append((False, failure))
                    else:
                        conn.execute("RELEASE unit")
                        outcomes.append((True, result))
                if not conn.in_transaction:
                    raise sqlite3.OperationalError("the group's transaction was rolled back by SQLite")
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._abort(conn, drop=True)
                return all_failed(exc)
            except BaseException:
                self._abort(conn, drop=False)
                raise
            return outcomes

    # -- small shared documents ------------------------------------------------------
    def put_kv(self, key: str, value: Any) -> None:
        with self.transaction() as tx:
            tx.put_kv(key, value)

    def probe_write(self) -> float:
        """Does a real write and read back; returns the seconds it took (health check)."""
        started = time.monotonic()
        token = uuid.uuid4().hex
        with self.transaction() as tx:
            tx.put_kv("health.probe", {"token": token, "at": time.time()})
        if (self.get_kv("health.probe") or {}).get("token") != token:
            raise StorageUnavailable("health probe did not read back what it wrote")
        return time.monotonic() - started

    def save_metrics(self, rows: Sequence[tuple[str, str, str, Any]]) -> None:
        """Upserts metric values: (name, labels_json, kind, value)."""
        now = time.time()
        with self.transaction() as tx:
            tx.conn.executemany(
                "INSERT INTO metrics(name, labels, kind, value, updated_at) VALUES (?,?,?,?,?) "
                "ON CONFLICT(name, labels) DO UPDATE SET kind=excluded.kind, value=excluded.value, "
                "updated_at=excluded.updated_at",
                [(n, labels, kind, _dumps(value), now) for n, labels, kind, value in rows],
            )

    def record_config_audit(self, actor: str, keys: Sequence[str], changes: dict[str, Any]) -> None:
        with self.transaction() as tx:
            tx.conn.execute(
                "INSERT INTO config_audit(at, actor, keys, changes) VALUES (?,?,?,?)",
                (time.time(), actor, _dumps(list(keys)), _dumps(changes)),
            )

    # -- operator writes (console, admin API) ----------------------------------------
    def retry_dead_letter(self, job_id: int, actor: str) -> bool:
        """Puts a dead job back in the queue with fresh attempts."""
        now = time.time()
        with self.transaction() as tx:
            changed = tx.conn.execute(
                "UPDATE jobs SET state='pending', run_at=?, attempts=0, lease_owner=NULL, "
                "lease_expires_at=NULL, outcome='', finished_at=NULL, updated_at=? "
                "WHERE id=? AND state='dead'",
                (now, now, job_id),
            ).rowcount
            if changed:
                tx.record_operator_action(actor, "retry_dead_letter", f"job:{job_id}", "", now)
            return bool(changed)

    def discard_dead_letter(self, job_id: int, actor: str) -> bool:
        now = time.time()
        with self.transaction() as tx:
            changed = tx.conn.execute(
                "UPDATE jobs SET state='discarded', updated_at=? WHERE id=? AND state='dead'",
                (now, job_id),
            ).rowcount
            if changed:
                tx.record_operator_action(actor, "discard_dead_letter", f"job:{job_id}", "", now)
            return bool(changed)

    def set_bot_ownership(
        self, account_id: int, conversation_id: int, *, bot: bool, actor: str
    ) -> bool:
        """Pauses the bot on a conversation, or gives the conversation back to it."""
        now = time.time()
        owner, reason = ("bot", f"given back by {actor}") if bot else ("paused", f"paused by {actor}")
        with self.transaction() as tx:
            if tx.get_conversation(account_id, conversation_id) is None:
                return False
            tx.set_owner(account_id, conversation_id, owner, reason, now)
            if not bot:
                tx.cancel_pending_jobs(account_id, conversation_id, "bot paused by operator", now)
            tx.record_operator_action(
                actor, "give_back" if bot else "pause", f"conversation:{account_id}/{conversation_id}", "", now
            )
            return True


class Tx:
    """Write operations inside one BEGIN IMMEDIATE transaction (see Store.transaction)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def _one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        return self.conn.execute(sql, params).fetchone()

    # -- intake ------------------------------------------------------------------------
    def insert_delivery(
        self,
        *,
        delivery_id: str | None,
        dedup_key: str | None,
        event: str,
        outcome: str,
        reason: str,
        received_at: float,
        account_id: int | None,
        conversation_id: int | None,
        message_id: int | None,
        body: str,
    ) -> bool:
        """Stores a delivery; False when the delivery id or dedup key was seen before."""
        cur = self.conn.execute(
            "INSERT INTO deliveries(delivery_id, dedup_key, event, outcome, reason, received_at, "
            "account_id, conversation_id, message_id, body) VALUES (?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT DO NOTHING",
            (delivery_id, dedup_key, event, outcome, reason, received_at, account_id,
             conversation_id, message_id, body),
        )
        return cur.rowcount == 1

    def pending_deliveries(self, limit: int) -> list[PendingDelivery]:
        """Journaled deliveries not applied yet, oldest first (arrival order is apply order)."""
        rows = self.conn.execute(
            "SELECT id, delivery_id, received_at, body FROM deliveries WHERE outcome='pending' "
            "ORDER BY id LIMIT ?",
            (limit,),
        ).fetchall()
        return [PendingDelivery(r[0], r[1], r[2], r[3]) for r in rows]

    def set_delivery_outcome(self, row_id: int, outcome: str, reason: str) -> None:
        self.conn.execute("UPDATE deliveries SET outcome=?, reason=? WHERE id=?", (outcome, reason, row_id))

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Undoes only the enclosed writes when the block raises (the transaction goes on).
        Storage trouble comes out as StorageUnavailable, any other SQLite error as StateError."""
        self.conn.execute("SAVEPOINT part")
        try:
            yield
        except BaseException as exc:
            try:
                self.conn.execute("ROLLBACK TO part")
                self.conn.execute("RELEASE part")
            except sqlite3.Error:
                pass  # the transaction itself is gone; the caller's group fails as a whole
            if isinstance(exc, sqlite3.OperationalError):
                raise StorageUnavailable(str(exc)) from exc  # full disk, I/O error, lock
            if isinstance(exc, sqlite3.Error):
                raise StateError(str(exc)) from exc  # a constraint or a bug: this block's own fault
            raise
        self.conn.execute("RELEASE part")

    def get_conversation(self, account_id: int, conversation_id: int) -> ConversationRow | None:
        row = self._one(
            "SELECT * FROM conversations WHERE account_id=? AND conversation_id=?",
            (account_id, conversation_id),
        )
        return ConversationRow.from_row(dict(row)) if row else None

    _CONVERSATION_FIELDS = frozenset({
        "inbox_id", "inbox_name", "channel", "channel_type", "contact_id", "contact_name",
        "contact_json", "status", "assignee_type", "assignee_id", "team_id", "labels", "can_reply",
        "crew", "last_message_at", "last_message_preview", "last_message_role", "last_activity_at",
    })

    def upsert_conversation(self, account_id: int, conversation_id: int, now: float, **fields: Any) -> None:
        """Creates the conversation or updates the given fields (others stay as they were)."""
        unknown = set(fields) - self._CONVERSATION_FIELDS
        if unknown:
            raise StateError(f"unknown conversation fields: {sorted(unknown)}")
        values = {k: (_dumps(v) if k in ("labels", "contact_json") and not isinstance(v, str) else v)
                  for k, v in fields.items()}
        exists = self._one(
            "SELECT 1 FROM conversations WHERE account_id=? AND conversation_id=?",
            (account_id, conversation_id),
        )
        if exists is None:
            cols = ["account_id", "conversation_id", "created_at", "updated_at", "owner_changed_at", *values]
            params = [account_id, conversation_id, now, now, now, *values.values()]
            self.conn.execute(
                f"INSERT INTO conversations({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                params,
            )
            return
        sets = ", ".join(f"{k}=?" for k in values)
        self.conn.execute(
            f"UPDATE conversations SET {sets + ', ' if sets else ''}updated_at=? "
            "WHERE account_id=? AND conversation_id=?",
            [*values.values(), now, account_id, conversation_id],
        )

    def set_owner(self, account_id: int, conversation_id: int, owner: str, reason: str, now: float) -> None:
        self.conn.execute(
            "UPDATE conversations SET owner=?, owner_reason=?, owner_changed_at=?, updated_at=? "
            "WHERE account_id=? AND conversation_id=?",
            (owner, reason, now, now, account_id, conversation_id),
        )

    def insert_message(
        self,
        *,
        account_id: int,
        conversation_id: int,
        message_id: int | None,
        role: str,
        sender_type: str,
        sender_id: int | None,
        content: str,
        content_type: str,
        attachments: Sequence[dict[str, Any]],
        private: bool,
        content_hash: str,
        created_at: float,
        job_id: int | None = None,
    ) -> bool:
        """Stores a message once (the Chatwoot message id is unique); False if known."""
        cur = self.conn.execute(
            "INSERT INTO messages(account_id, conversation_id, message_id, role, sender_type, "
            "sender_id, content, content_type, attachments, private, content_hash, job_id, created_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
            (account_id, conversation_id, message_id, role, sender_type, sender_id, content,
             content_type, _dumps(list(attachments)), int(private), content_hash, job_id, created_at),
        )
        return cur.rowcount == 1

    def message_exists(self, message_id: int) -> bool:
        return self._one("SELECT 1 FROM messages WHERE message_id=?", (message_id,)) is not None

    def find_own_action(
        self, account_id: int, conversation_id: int, content_hash: str, since: float
    ) -> ActionRecord | None:
        """Finds a message the sidecar itself posted (or is posting) with this content."""
        row = self._one(
            "SELECT * FROM actions_applied WHERE account_id=? AND conversation_id=? AND "
            "content_hash=? AND started_at>=? ORDER BY started_at DESC LIMIT 1",
            (account_id, conversation_id, content_hash, since),
        )
        return ActionRecord(**dict(row)) if row else None

    def own_message_seen(
        self, account_id: int, conversation_id: int, content_hash: str, since: float
    ) -> int | None:
        """Returns the Chatwoot id of an echoed bot/note message with this content, if any."""
        row = self._one(
            "SELECT message_id FROM messages WHERE account_id=? AND conversation_id=? AND "
            "content_hash=? AND role IN ('bot','note') AND created_at>=? AND message_id IS NOT NULL "
            "ORDER BY id DESC LIMIT 1",
            (account_id, conversation_id, content_hash, since),
        )
        return row[0] if row else None

    # -- queue: enqueue ------------------------------------------------------------------
    def enqueue_message(
        self,
        account_id: int,
        conversation_id: int,
        message_id: int,
        now: float,
        debounce: float,
        debounce_max: float,
    ) -> Job:
        """Adds a customer message to the conversation's open burst (up to
        MAX_BURST_MESSAGES), or starts a new one.

        A burst stays open while it has never been sent to a crew, so a retried request
        always carries exactly what the first attempt carried (same Idempotency-Key, same body).
        """
        row = self._one(
            "SELECT * FROM jobs WHERE account_id=? AND conversation_id=? AND state='pending' "
            "AND attempts=0 AND actions IS NULL AND lease_owner IS NULL ORDER BY id DESC LIMIT 1",
            (account_id, conversation_id),
        )
        job = Job.from_row(dict(row)) if row is not None else None
        if job is not None and len(job.message_ids) < MAX_BURST_MESSAGES:
            ids = list(job.message_ids)
            if message_id not in ids:
                ids.append(message_id)
            run_at = min(job.first_message_at + debounce_max, now + debounce)
            self.conn.execute(
                "UPDATE jobs SET message_ids=?, run_at=?, updated_at=? WHERE id=?",
                (_dumps(ids), run_at, now, job.id),
            )
            return self.get_job(job.id)
        cur = self.conn.execute(
            "INSERT INTO jobs(request_id, account_id, conversation_id, state, message_ids, "
            "first_message_at, run_at, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
            (str(uuid.uuid4()), account_id, conversation_id, "pending", _dumps([message_id]),
             now, now + debounce, now, now),
        )
        return self.get_job(int(cur.lastrowid))  # type: ignore[arg-type]

    def cancel_pending_jobs(self, account_id: int, conversation_id: int, reason: str, now: float) -> int:
        """Cancels bursts not yet sent to a crew (a human took the conversation)."""
        return self.conn.execute(
            "UPDATE jobs SET state='cancelled', outcome='cancelled', last_error=?, finished_at=?, "
            "updated_at=? WHERE account_id=? AND conversation_id=? AND state='pending' "
            "AND lease_owner IS NULL",
            (reason, now, now, account_id, conversation_id),
        ).rowcount

    # -- queue: worker side ----------------------------------------------------------------
    def get_job(self, job_id: int) -> Job:
        row = self._one("SELECT * FROM jobs WHERE id=?", (job_id,))
        if row is None:
            raise StateError(f"no job {job_id}")
        return Job.from_row(dict(row))

    def job_by_request_id(self, request_id: str) -> Job | None:
        row = self._one("SELECT * FROM jobs WHERE request_id=?", (request_id,))
        return Job.from_row(dict(row)) if row else None

    def claim_jobs(self, owner: str, now: float, lease_seconds: float, limit: int) -> list[Job]:
        """Leases up to ``limit`` ready jobs, at most one per conversation and in order.

        A job is ready when it is pending and due, or in flight under an expired lease (its
        worker died). A conversation's older open job always blocks its newer ones.
        """
        rows = self.conn.execute(
            """
            SELECT j.id FROM jobs j
            WHERE ((j.state='pending' AND j.run_at<=?) OR
                   (j.state='in_flight' AND j.lease_expires_at<?) OR
                   (j.state='waiting' AND j.run_at<=?))
              AND NOT EXISTS (
                SELECT 1 FROM jobs o WHERE o.account_id=j.account_id
                  AND o.conversation_id=j.conversation_id AND o.id<j.id
                  AND o.state IN ('pending','in_flight','waiting'))
              AND NOT EXISTS (
                SELECT 1 FROM jobs o WHERE o.account_id=j.account_id
                  AND o.conversation_id=j.conversation_id AND o.id<>j.id
                  AND o.state='in_flight' AND o.lease_expires_at>=?)
            ORDER BY j.run_at, j.id LIMIT ?
            """,
            (now, now, now, now, limit * 4),
        ).fetchall()
        claimed: list[Job] = []
        seen: set[tuple[int, int]] = set()
        for (job_id,) in rows:
            job = self.get_job(job_id)
            key = (job.account_id, job.conversation_id)
            if key in seen:
                continue
            seen.add(key)
            self.conn.execute(
                "UPDATE jobs SET state='in_flight', lease_owner=?, lease_expires_at=?, updated_at=? "
                "WHERE id=?",
                (owner, now + lease_seconds, now, job_id),
            )
            claimed.append(self.get_job(job_id))
            if len(claimed) >= limit:
                break
        return claimed

    def _fenced(self, sql: str, params: Sequence[Any], job_id: int, owner: str) -> bool:
        """Runs an update only if ``owner`` still holds the job's lease."""
        cur = self.conn.execute(
            sql + " WHERE id=? AND lease_owner=? AND state='in_flight'", (*params, job_id, owner)
        )
        return cur.rowcount == 1

    def extend_lease(self, job_id: int, owner: str, until: float) -> bool:
        return self._fenced("UPDATE jobs SET lease_expires_at=?", (until,), job_id, owner)

    def set_route(
        self,
        job_id: int,
        owner: str,
        *,
        crew: str,
        backend: str,
        source: str,
        reason: str,
        confidence: float | None,
        now: float,
    ) -> bool:
        job = self.get_job(job_id)
        ok = self._fenced(
            "UPDATE jobs SET crew=?, backend=?, route_source=?, route_reason=?, route_confidence=?, updated_at=?",
            (crew, backend, source, reason, confidence, now),
            job_id,
            owner,
        )
        if ok:
            self.conn.execute(
                "INSERT INTO routing_decisions(job_id, account_id, conversation_id, crew, source, "
                "reason, confidence, decided_at) VALUES (?,?,?,?,?,?,?,?)",
                (job_id, job.account_id, job.conversation_id, crew, source, reason, confidence, now),
            )
            self.conn.execute(
                "UPDATE conversations SET crew=? WHERE account_id=? AND conversation_id=?",
                (crew, job.account_id, job.conversation_id),
            )
        return ok

    def set_envelope(self, job_id: int, owner: str, envelope: dict[str, Any], now: float) -> bool:
        return self._fenced(
            "UPDATE jobs SET envelope=?, updated_at=?", (_dumps(envelope), now), job_id, owner
        )

    def start_attempt(self, job_id: int, owner: str, now: float) -> int | None:
        """Counts one more crew attempt; returns its number, or None if the lease is lost."""
        if not self._fenced("UPDATE jobs SET attempts=attempts+1, updated_at=?", (now,), job_id, owner):
            return None
        return self.get_job(job_id).attempts

    def record_attempt(
        self,
        *,
        job_id: int,
        request_id: str,
        crew: str,
        backend: str,
        attempt: int,
        started_at: float,
        duration: float | None,
        outcome: str,
        status_code: int | None,
        error: str,
    ) -> None:
        self.conn.execute(
            "INSERT INTO crew_attempts(job_id, request_id, crew, backend, attempt, started_at, "
            "duration, outcome, status_code, error) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (job_id, request_id, crew, backend, attempt, started_at, duration, outcome, status_code, error),
        )

    def store_actions(self, job_id: int, owner: str, actions: Sequence[dict[str, Any]], now: float) -> bool:
        return self._fenced(
            "UPDATE jobs SET actions=?, updated_at=?",
            (_dumps(list(actions)), now),
            job_id,
            owner,
        )

    def set_waiting(
        self, job_id: int, owner: str, *, run_at: float, deadline_at: float, external_id: str, now: float
    ) -> bool:
        """Parks a job until its asynchronous answer arrives, its next poll (``run_at``), or
        its deadline. ``external_id`` is never NULL afterwards: it marks "the crew accepted"."""
        # The answer may already be here: a fast crew can call back before we park the job.
        return self._fenced(
            "UPDATE jobs SET state=CASE WHEN actions IS NULL THEN 'waiting' ELSE 'pending' END, "
            "run_at=CASE WHEN actions IS NULL THEN ? ELSE ? END, deadline_at=?, external_id=?, "
            "lease_owner=NULL, lease_expires_at=NULL, updated_at=?",
            (min(run_at, deadline_at), now, deadline_at, external_id, now),
            job_id,
            owner,
        )

    def count_apply_attempt(self, job_id: int, owner: str, now: float) -> int | None:
        if not self._fenced("UPDATE jobs SET apply_attempts=apply_attempts+1, updated_at=?", (now,), job_id, owner):
            return None
        return self.get_job(job_id).apply_attempts

    def mark_failed(self, job_id: int, owner: str, reason: str, now: float) -> bool:
        """Records that the crew step gave up; the failure policy's actions follow."""
        return self._fenced(
            "UPDATE jobs SET outcome='failed', last_error=?, updated_at=?", (reason, now), job_id, owner
        )

    def complete_async(self, request_id: str, actions: Sequence[dict[str, Any]], now: float) -> str:
        """Stores an asynchronous crew answer: ``applied``, ``duplicate`` or ``unknown``."""
        job = self.job_by_request_id(request_id)
        if job is None:
            return "unknown"
        if job.actions is not None or job.state in TERMINAL_STATES:
            return "duplicate"
        self.conn.execute(
            "UPDATE jobs SET actions=?, state=CASE WHEN state='waiting' THEN 'pending' ELSE state END, "
            "run_at=?, updated_at=? WHERE id=?",
            (_dumps(list(actions)), now, now, job.id),
        )
        return "applied"

    def poll_now(self, request_id: str, now: float) -> bool:
        """Makes a job waiting for an asynchronous answer due now (its back-end said "done")."""
        return self.conn.execute(
            "UPDATE jobs SET run_at=?, updated_at=? WHERE request_id=? AND state='waiting'", (now, now, request_id)
        ).rowcount == 1

    def schedule_retry(self, job_id: int, owner: str, run_at: float, error: str, now: float) -> bool:
        return self._fenced(
            "UPDATE jobs SET state='pending', run_at=?, last_error=?, lease_owner=NULL, "
            "lease_expires_at=NULL, updated_at=?",
            (run_at, error, now),
            job_id,
            owner,
        )

    def finish_job(self, job_id: int, owner: str, state: str, outcome: str, error: str, now: float) -> bool:
        if state not in TERMINAL_STATES:
            raise StateError(f"not a terminal state: {state}")
        return self._fenced(
            "UPDATE jobs SET state=?, outcome=?, last_error=?, lease_owner=NULL, lease_expires_at=NULL, "
            "finished_at=?, updated_at=?",
            (state, outcome, error, now, now),
            job_id,
            owner,
        )

    def newer_open_job(self, account_id: int, conversation_id: int, job_id: int) -> Job | None:
        """A later burst of the same conversation that has not been answered yet."""
        row = self._one(
            "SELECT * FROM jobs WHERE account_id=? AND conversation_id=? AND id>? AND "
            "state='pending' AND actions IS NULL ORDER BY id LIMIT 1",
            (account_id, conversation_id, job_id),
        )
        return Job.from_row(dict(row)) if row else None

    def fold_into(self, older: Job, newer: Job, now: float) -> None:
        """Moves an overtaken burst's messages into the newer burst, so the next crew
        request answers all of them at once.

        The merged burst keeps only the newest MAX_BURST_MESSAGES: a customer who keeps
        overtaking every answer must not grow one request without bound (the older messages
        still travel as history)."""
        ids = list(dict.fromkeys([*older.message_ids, *newer.message_ids]))[-MAX_BURST_MESSAGES:]
        self.conn.execute(
            "UPDATE jobs SET message_ids=?, first_message_at=min(first_message_at, ?), updated_at=? WHERE id=?",
            (_dumps(ids), older.first_message_at, now, newer.id),
        )

    def release_leases(self, owner: str, now: float) -> int:
        """Hands back every job this worker holds (graceful shutdown)."""
        return self.conn.execute(
            "UPDATE jobs SET state='pending', lease_owner=NULL, lease_expires_at=NULL, run_at=?, "
            "updated_at=? WHERE lease_owner=? AND state='in_flight'",
            (now, now, owner),
        ).rowcount

    # -- actions applied in Chatwoot -------------------------------------------------------
    def get_action(self, job_id: int, idx: int) -> ActionRecord | None:
        row = self._one("SELECT * FROM actions_applied WHERE job_id=? AND idx=?", (job_id, idx))
        return ActionRecord(**dict(row)) if row else None

    def begin_action(
        self, job_id: int, idx: int, kind: str, account_id: int, conversation_id: int,
        content_hash: str, now: float,
    ) -> ActionRecord:
        self.conn.execute(
            "INSERT INTO actions_applied(job_id, idx, kind, account_id, conversation_id, content_hash, "
            "state, started_at) VALUES (?,?,?,?,?,?,'started',?) "
            "ON CONFLICT(job_id, idx) DO UPDATE SET started_at=excluded.started_at",
            (job_id, idx, kind, account_id, conversation_id, content_hash, now),
        )
        action = self.get_action(job_id, idx)
        assert action is not None
        return action

    def forget_action(self, job_id: int, idx: int) -> None:
        """Drops a step that certainly did not happen (the peer refused it)."""
        self.conn.execute("DELETE FROM actions_applied WHERE job_id=? AND idx=? AND state='started'", (job_id, idx))

    def finish_action(
        self, job_id: int, idx: int, *, chatwoot_message_id: int | None, detail: str, now: float
    ) -> None:
        self.conn.execute(
            "UPDATE actions_applied SET state='done', chatwoot_message_id=?, detail=?, finished_at=? "
            "WHERE job_id=? AND idx=?",
            (chatwoot_message_id, detail, now, job_id, idx),
        )

    # -- context ----------------------------------------------------------------------------
    def messages_by_ids(self, account_id: int, conversation_id: int, ids: Sequence[int]) -> list[MessageRow]:
        if not ids:
            return []
        rows = self.conn.execute(
            f"SELECT * FROM messages WHERE account_id=? AND conversation_id=? AND message_id IN "
            f"({', '.join('?' * len(ids))}) ORDER BY id",
            (account_id, conversation_id, *ids),
        ).fetchall()
        return [MessageRow.from_row(dict(r)) for r in rows]

    def history(
        self, account_id: int, conversation_id: int, limit: int, exclude_ids: Sequence[int] = ()
    ) -> list[MessageRow]:
        """The last ``limit`` public messages before the current burst, oldest first."""
        if limit <= 0:
            return []
        exclude = list(exclude_ids)
        not_in = f"AND (message_id IS NULL OR message_id NOT IN ({', '.join('?' * len(exclude))}))" if exclude else ""
        rows = self.conn.execute(
            f"SELECT * FROM messages WHERE account_id=? AND conversation_id=? AND private=0 "
            f"AND role IN ('customer','bot','agent') {not_in} ORDER BY id DESC LIMIT ?",
            (account_id, conversation_id, *exclude, limit),
        ).fetchall()
        return [MessageRow.from_row(dict(r)) for r in reversed(rows)]

    def latest_customer_message_id(self, account_id: int, conversation_id: int) -> int | None:
        row = self._one(
            "SELECT max(message_id) FROM messages WHERE account_id=? AND conversation_id=? AND role='customer'",
            (account_id, conversation_id),
        )
        return row[0] if row else None

    # -- misc -------------------------------------------------------------------------------
    def put_kv(self, key: str, value: Any) -> None:
        self.conn.execute(
            "INSERT INTO kv(key, value, updated_at) VALUES (?,?,?) ON CONFLICT(key) DO UPDATE SET "
            "value=excluded.value, updated_at=excluded.updated_at",
            (key, _dumps(value), time.time()),
        )

    def record_operator_action(self, actor: str, action: str, target: str, detail: str, now: float) -> None:
        self.conn.execute(
            "INSERT INTO operator_actions(at, actor, action, target, detail) VALUES (?,?,?,?,?)",
            (now, actor, action, target, detail),
        )
