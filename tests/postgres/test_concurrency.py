"""The PostgreSQL state under concurrency: what SQLite's single writer gave for free, checked with
several connections at once (each a process of its own, as far as the server can tell)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from state import (
    Database,
    DatabaseMissing,
    PostgresDatabase,
    SchemaMismatch,
    StateError,
    StorageUnavailable,
    Tx,
    open_database,
)
from state.postgres.migrations import KNOWN_MIGRATIONS, SCHEMA_TABLE
from state.sqlite.migrations import KNOWN_MIGRATIONS as SQLITE_MIGRATIONS
from tests import backends


@pytest.fixture
def url(tmp_path: Path) -> str:
    return backends.state_location(tmp_path, backends.POSTGRES)


@pytest.fixture
def dbs(url: str) -> Iterator[Callable[[], Database]]:
    """Opens as many connections to one migrated database as a test wants."""
    opened: list[Database] = [open_database(url, migrate=True)]

    def another() -> Database:
        opened.append(open_database(url))
        return opened[-1]

    yield another
    for db in opened:
        db.close()


def _together(*fns: Callable[[], Any]) -> list[Any]:
    """Runs the functions at the same moment, each on its own thread; their results in order."""
    barrier = threading.Barrier(len(fns))
    results: list[Any] = [None] * len(fns)

    def run(i: int, fn: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            results[i] = fn()
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(fns)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_two_connections_claiming_at_once_get_disjoint_jobs(dbs: Callable[[], Database]) -> None:
    first, second = dbs(), dbs()
    now = time.time()
    with first.transaction() as tx:
        for conv in range(40):
            tx.jobs.enqueue(1, conv, 1000 + conv, now, 0, 0)

    def claim_all(db: Database, owner: str) -> list[int]:
        got: list[int] = []
        while True:
            batch = db.write(lambda tx: tx.jobs.claim(owner, time.time(), 30, 3))
            if not batch:
                return got
            got += [job.id for job in batch]

    a, b = _together(lambda: claim_all(first, "a"), lambda: claim_all(second, "b"))
    assert not set(a) & set(b)
    assert sorted(a + b) == list(range(1, 41))
    owners = first.read(lambda tx: tx.sql.all("SELECT lease_owner, count(*) AS n FROM jobs GROUP BY lease_owner"))
    assert {r["lease_owner"]: r["n"] for r in owners} == {"a": len(a), "b": len(b)}


def test_a_conversation_is_claimed_by_one_worker_and_in_order(dbs: Callable[[], Database]) -> None:
    first, second = dbs(), dbs()
    now = time.time()
    with first.transaction() as tx:
        older = tx.jobs.enqueue(1, 7, 10, now, 0, 0)
        tx.jobs.claim("x", now, 30, 1)  # sent to a crew: the next message starts a new burst
        tx.jobs.enqueue(1, 7, 11, now, 0, 0)  # the newer burst
        tx.jobs.release_leases("x", now)
    a, b = _together(lambda: first.write(lambda tx: tx.jobs.claim("a", time.time(), 30, 10)),
                     lambda: second.write(lambda tx: tx.jobs.claim("b", time.time(), 30, 10)))
    claimed = [job.id for job in a + b]
    assert claimed == [older]  # the newer burst waits for the older, whoever claimed it


def test_an_append_to_an_open_burst_and_a_claim_never_lose_a_message(dbs: Callable[[], Database]) -> None:
    """The applier appends to the open burst while a worker claims it: the message is either in
    the claimed burst or in a new one, never in a request already sent."""
    applier, worker = dbs(), dbs()
    for round_ in range(30):
        conv = 100 + round_
        now = time.time()
        applier.write(lambda tx, conv=conv, now=now: tx.jobs.enqueue(1, conv, conv * 10, now - 1, 0, 0))
        _, claimed = _together(
            lambda conv=conv: applier.write(lambda tx: tx.jobs.enqueue(1, conv, conv * 10 + 1, time.time(), 0, 0)),
            lambda: worker.write(lambda tx: tx.jobs.claim("w", time.time(), 30, 100)))
        jobs = applier.read(lambda tx, conv=conv: tx.jobs.for_conversation(1, conv))
        carried = sorted(m for job in jobs for m in job.message_ids)
        assert carried == [conv * 10, conv * 10 + 1], jobs  # each message in exactly one burst
        sent = {job.id: job.message_ids for job in claimed if job.conversation_id == conv}
        for job in jobs:
            if job.id in sent:
                assert job.message_ids == sent[job.id]  # what the worker took is what it sends


def test_folding_into_a_burst_while_the_applier_appends_keeps_every_message(dbs: Callable[[], Database]) -> None:
    applier, worker = dbs(), dbs()
    now = time.time()
    with applier.transaction() as tx:
        older_id = tx.jobs.enqueue(1, 5, 1, now, 0, 0)
        [older] = tx.jobs.claim("w", now, 30, 1)
        newer_id = tx.jobs.enqueue(1, 5, 2, now, 60, 60)
    newer = applier.read(lambda tx: tx.jobs.get(newer_id))
    _together(lambda: worker.write(lambda tx: tx.jobs.fold_into(older, newer, time.time())),
              lambda: applier.write(lambda tx: tx.jobs.enqueue(1, 5, 3, time.time(), 60, 60)))
    merged = applier.read(lambda tx: tx.jobs.get(newer_id))
    assert sorted(merged.message_ids) == [1, 2, 3] and older_id != newer_id


def test_appliers_take_turns(dbs: Callable[[], Database]) -> None:
    """The journal is applied by one applier at a time: the second waits for the first's commit."""
    first, second = dbs(), dbs()
    order: list[str] = []
    taken = threading.Event()

    def waiting_for_the_turn(tx: Tx) -> bool:
        return bool(tx.sql.scalar("SELECT count(*) FROM pg_locks WHERE locktype='advisory' AND NOT granted"))

    def slow(tx: Tx) -> None:
        tx.journal.take_applier_turn()
        order.append("first in")
        taken.set()
        deadline = time.monotonic() + 30
        while not waiting_for_the_turn(tx) and time.monotonic() < deadline:  # until the second waits
            time.sleep(0.01)  # polling the condition above
        order.append("first out")

    def fast(tx: Tx) -> None:
        assert taken.wait(30)  # the first holds the turn
        tx.journal.take_applier_turn()
        order.append("second in")

    _together(lambda: first.write(slow), lambda: second.write(fast))
    assert order == ["first in", "first out", "second in"]


def test_additive_metrics_from_many_writers_add_up(dbs: Callable[[], Database]) -> None:
    writers = [dbs() for _ in range(4)]
    rows = [("m_total", f'{{"k":"{i}"}}', "counter", "", 1.0) for i in range(20)]

    def add(db: Database) -> None:
        for _ in range(10):
            # Each writer lists the rows in its own order: sorted inside, so never a deadlock.
            db.write(lambda tx: tx.metrics.add(list(reversed(rows)) if id(db) % 2 else rows, time.time()))

    results = _together(*(lambda db=db: add(db) for db in writers))
    assert all(r is None for r in results), results
    totals = writers[0].read(lambda tx: tx.metrics.totals())
    assert {value for *_rest, value in totals} == {40.0}


def test_a_delivery_or_message_is_stored_once_whoever_stores_it(dbs: Callable[[], Database]) -> None:
    writers = [dbs() for _ in range(4)]

    def journal(db: Database) -> bool:
        return db.write(lambda tx: tx.journal.insert(
            delivery_id="same", dedup_key="msg:1", event="message_created", received_at=time.time(),
            account_id=1, conversation_id=2, message_id=1, body="{}"))

    assert sorted(_together(*(lambda db=db: journal(db) for db in writers))) == [False, False, False, True]


def test_a_stale_worker_is_fenced_after_another_took_the_job(dbs: Callable[[], Database]) -> None:
    first, second = dbs(), dbs()
    now = time.time()
    job = first.write(lambda tx: tx.jobs.enqueue(1, 9, 1, now, 0, 0))
    first.write(lambda tx: tx.jobs.claim("paused", now, 1, 1))
    [taken] = second.write(lambda tx: tx.jobs.claim("live", now + 2, 30, 1))
    assert taken.id == job
    assert not first.write(lambda tx: tx.jobs.still_held(job, "paused", time.time()))
    assert not first.write(lambda tx: tx.jobs.finish(job, "paused", "done", "answered", "", time.time()))
    assert second.write(lambda tx: tx.jobs.finish(job, "live", "done", "answered", "", time.time()))


def test_sidecars_starting_together_migrate_once(url: str) -> None:
    results = _together(*(lambda: open_database(url, migrate=True) for _ in range(3)))
    assert all(isinstance(db, PostgresDatabase) for db in results), results
    names = results[0].read(lambda tx: tx.sql.column(f"SELECT name FROM {SCHEMA_TABLE} ORDER BY name"))
    assert tuple(names) == SQLITE_MIGRATIONS == KNOWN_MIGRATIONS
    for db in results:
        db.close()


def test_missing_foreign_older_and_newer_databases_are_reported(url: str, tmp_path: Path) -> None:
    with pytest.raises(DatabaseMissing):
        open_database(backends.with_database(url, "no_such_database"), readonly=True)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (x int)")
    with pytest.raises(SchemaMismatch, match="no connector schema"):
        open_database(url, readonly=True)
    open_database(url, migrate=True).close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"INSERT INTO {SCHEMA_TABLE} VALUES ('0099_future', 0)")
    with pytest.raises(SchemaMismatch, match="newer connector"):
        open_database(url, readonly=True)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DELETE FROM {SCHEMA_TABLE} WHERE name IN ('0099_future', '0003_processes_and_additive_metrics')")
    with pytest.raises(SchemaMismatch, match="older than this version"):
        open_database(url, readonly=True)


def test_a_lost_connection_is_storage_trouble_and_is_replaced(dbs: Callable[[], Database], url: str) -> None:
    db = dbs()
    pid = db.read(lambda tx: tx.sql.scalar("SELECT pg_backend_pid()"))
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(StorageUnavailable):
        db.read(lambda tx: tx.journal.counts())
    assert db.read(lambda tx: tx.journal.counts()) == {}  # a new connection, by itself
    assert db.read(lambda tx: tx.sql.scalar("SELECT pg_backend_pid()")) != pid


def test_a_statement_error_is_a_state_error_and_the_connection_lives_on(dbs: Callable[[], Database]) -> None:
    db = dbs()
    with pytest.raises(StateError) as caught:
        db.write(lambda tx: tx.sql.execute("INSERT INTO jobs(id) VALUES ('not a number')"))
    assert not isinstance(caught.value, StorageUnavailable)
    assert db.write(lambda tx: tx.jobs.enqueue(1, 1, 1, time.time(), 0, 0)) == 1


def test_readonly_connections_cannot_write(dbs: Callable[[], Database], url: str) -> None:
    dbs()
    reader = open_database(url, readonly=True)
    try:
        with pytest.raises(StateError):
            reader.write(lambda tx: tx.jobs.enqueue(1, 1, 1, time.time(), 0, 0))
        with pytest.raises(StorageUnavailable):  # like a read-only file
            reader.read(lambda tx: tx.sql.execute("DELETE FROM jobs"))
    finally:
        reader.close()


def test_messages_never_show_the_password(url: str) -> None:
    wrong = url.replace(":connector-test-pw-7f3a@", ":not-the-password-4711@")
    with pytest.raises(StorageUnavailable) as caught:
        open_database(wrong, readonly=True)
    assert "not-the-password-4711" not in str(caught.value) and "connector-test-pw-7f3a" not in str(caught.value)
    assert "password authentication failed" in str(caught.value)


def test_watchdogs_of_several_replicas_queue_each_reminder_once(dbs: Callable[[], Database]) -> None:
    """Every replica's hand-off watchdog looks at the same due hand-offs at once: each reminder is
    claimed by one of them (handoffs.mark_reminded) and queued as one notice job."""
    from connector_config.team import HandoffConfig
    from sidecar.queue.handoff_watchdog import queue_reminders

    watchdogs = [dbs() for _ in range(3)]
    now = time.time()
    with watchdogs[0].transaction() as tx:
        for conv in range(1, 21):
            tx.conversations.upsert(1, conv, now, status="open")
            tx.handoffs.record(account_id=1, conversation_id=conv, job_id=None, category="customer_request",
                               reason="asked", crew="faq", rule="", team_id=None, now=now - 600)
    settings = HandoffConfig(remind_after_minutes=5)
    results = _together(*(lambda db=db: db.write(lambda tx: queue_reminders(tx, settings, time.time()))
                          for db in watchdogs))
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert sum(queued for queued, _, _ in results) == 20
    notices = watchdogs[0].read(lambda tx: tx.sql.column(
        "SELECT conversation_id FROM jobs WHERE mode='notice' ORDER BY conversation_id"))
    assert notices == list(range(1, 21))
    assert watchdogs[0].read(lambda tx: tx.handoffs.waiting()) == 0


def test_a_writer_paused_inside_a_transaction_loses_its_locks(dbs: Callable[[], Database],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A process stopped in the middle of a unit (SIGSTOP, a frozen VM) holds its row locks only
    until the server ends its idle transaction; the others then go on, and the paused one finds
    its connection gone (storage trouble, then a new connection) when it comes back."""
    from state.postgres import connect as pg_connect

    monkeypatch.setattr(pg_connect, "IDLE_IN_TRANSACTION_SECONDS", 1.0)
    paused, live = dbs(), dbs()
    now = time.time()
    burst = live.write(lambda tx: tx.jobs.enqueue(1, 1, 1, now, 60, 60))
    conn = paused.conn
    conn.execute("BEGIN")
    conn.execute("SELECT id FROM jobs WHERE id=%s FOR UPDATE", (burst,))  # ... and then nothing more
    started = time.monotonic()
    # The applier appends to the open burst: it waits for the row, then the paused session is ended.
    assert live.write(lambda tx: tx.jobs.enqueue(1, 1, 2, time.time(), 60, 60)) == burst
    assert time.monotonic() - started < 20
    with pytest.raises(StorageUnavailable):
        paused.read(lambda tx: tx.jobs.get(burst))
    assert paused.read(lambda tx: tx.jobs.get(burst)).message_ids == (1, 2)
