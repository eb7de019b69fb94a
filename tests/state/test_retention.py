"""Retention in the state: old rows go in small batches, what is still needed stays (both
back-ends); on SQLite space goes back to the disk and a file made before auto-vacuum converts
without losing a row; on PostgreSQL the figures are the database's size and autovacuum's job."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlite_utils import Database as SqliteUtils

import state.sqlite.maintenance as maintenance
from state import Database, StateError, Tx, open_database
from state.retention import DAY, KINDS, cutoffs, oldest_rows, prune_batch
from state.sqlite.migrations import MIGRATIONS
from tests import backends

NOW = time.time()
OLD = NOW - 40 * DAY
RECENT = NOW - 1 * DAY


def _delivery(tx: Tx, key: str, at: float, outcome: str = "accepted", conversation_id: int | None = None,
              body: str = "{}") -> None:
    tx.journal.insert(delivery_id=key, dedup_key=key, event="message_created", received_at=at, account_id=1,
                      conversation_id=conversation_id, message_id=None, body=body, outcome=outcome)


def _job(tx: Tx, conversation_id: int, message_id: int, at: float, state: str) -> int:
    """A job of ``state`` finished (or last touched) at ``at``, with an attempt and an action."""
    tx.messages.insert(account_id=1, conversation_id=conversation_id, message_id=message_id, role="customer",
                       sender_type="contact", sender_id=7, content=f"text {message_id}", content_type="text",
                       attachments=[], private=False, content_hash=f"h{message_id}", created_at=at)
    job_id = tx.jobs.enqueue(1, conversation_id, message_id, at, 0, 0, new_conversation=True)
    finished = at if state not in ("pending", "in_flight", "waiting") else None
    tx.sql.execute("UPDATE jobs SET state=?, finished_at=?, created_at=? WHERE id=?", (state, finished, at, job_id))
    tx.decisions.record(job_id=job_id, account_id=1, conversation_id=conversation_id, crew="c", source="rules",
                        reason="r", confidence=None, now=at)
    tx.decisions.record_attempt(job_id=job_id, request_id=f"r{job_id}", crew="c", backend="http", attempt=1,
                                started_at=at, duration=0.1, outcome="ok", status_code=200, error="")
    tx.effects.begin(job_id, 0, "reply", 1, conversation_id, "h", at)
    return job_id


def _seed(db: Database) -> dict[str, int]:
    ids: dict[str, int] = {}

    def unit(tx: Tx) -> None:
        for n in range(7):
            _delivery(tx, f"old-{n}", OLD)
        _delivery(tx, "old-unapplied", OLD, outcome="pending")
        _delivery(tx, "recent", RECENT)
        for n in range(5):
            _job(tx, 100 + n, 1000 + n, OLD, "done")
        _job(tx, 110, 1100, OLD, "discarded")
        ids["dead"] = _job(tx, 120, 1200, OLD, "dead")
        ids["open"] = _job(tx, 130, 1300, OLD, "pending")
        ids["recent"] = _job(tx, 140, 1400, RECENT, "done")
        for _n in range(4):
            tx.outcomes.record("answered", account_id=1, conversation_id=100, crew="c", rule="", now=OLD, value=1.0)
        tx.outcomes.record("answered", account_id=1, conversation_id=100, crew="c", rule="", now=RECENT, value=1.0)
        for n, replied in enumerate((OLD, None, None)):
            tx.handoffs.record(account_id=1, conversation_id=200 + n, job_id=None, category="other", reason="",
                               crew="c", rule="", team_id=None, now=OLD)
            if replied:
                tx.handoffs.human_replied(1, 200 + n, replied)
        tx.sql.execute("UPDATE handoffs SET reminded_at=? WHERE conversation_id=201", (OLD,))
        tx.audit.config_change("api", ["a"], {}, OLD)
        tx.audit.operator_action("console", "pause", "1/100", "", OLD)
        tx.audit.operator_action("console", "pause", "1/100", "", RECENT)
        # A histogram whose bucket was last added to long ago but whose count is fresh stays whole.
        tx.metrics.add([("h", "{}", "histogram", "b1", 1.0)], OLD)
        tx.metrics.add([("h", "{}", "histogram", "count", 1.0), ("gone", "{}", "counter", "", 3.0)], RECENT)
        tx.sql.execute("UPDATE metric_values SET updated_at=? WHERE name='gone'", (OLD,))
    db.write(unit)
    return ids


def _prune_all(db: Database, batch: int) -> dict[str, list[int]]:
    done: dict[str, list[int]] = {}
    for kind, before in cutoffs({kind: 30 for kind in KINDS}, NOW).items():
        while True:
            n = db.write(lambda tx, kind=kind, before=before: prune_batch(tx, kind, before, batch), durable=False)
            done.setdefault(kind, []).append(n)
            if n < batch:
                break
    return done


def test_old_rows_go_in_batches_and_what_is_needed_stays(db: Database) -> None:
    ids = _seed(db)
    batches = _prune_all(db, batch=3)
    assert batches["deliveries"] == [3, 3, 1]  # seven old applied deliveries, three at a time
    assert max(max(b) for b in batches.values()) <= 3 * 2  # audit: two tables, one batch each

    def facts(tx: Tx) -> dict[str, object]:
        return {
            "deliveries": sorted(tx.sql.column("SELECT delivery_id FROM deliveries")),
            "jobs": sorted(tx.sql.column("SELECT id FROM jobs")),
            "attempts": sorted(tx.sql.column("SELECT job_id FROM crew_attempts")),
            "actions": sorted(tx.sql.column("SELECT job_id FROM actions_applied")),
            "decisions": sorted(tx.sql.column("SELECT job_id FROM routing_decisions")),
            "messages": sorted(tx.sql.column("SELECT message_id FROM messages")),
            "outcomes": tx.sql.scalar("SELECT count(*) FROM outcomes"),
            "handoffs": sorted(tx.sql.column("SELECT conversation_id FROM handoffs")),
            "audit": (tx.sql.scalar("SELECT count(*) FROM config_audit"),
                      tx.sql.scalar("SELECT count(*) FROM operator_actions")),
            "metrics": sorted(tx.sql.column("SELECT name || ':' || part FROM metric_values")),
        }
    kept = db.read(facts)
    assert kept["deliveries"] == ["old-unapplied", "recent"]  # nothing accepted is ever lost
    kept_jobs = [ids["dead"], ids["open"], ids["recent"]]
    assert kept["jobs"] == kept["attempts"] == kept["actions"] == kept["decisions"] == kept_jobs
    assert kept["messages"] == [1200, 1300, 1400]  # the dead letter's and the open job's conversations
    assert kept["outcomes"] == 1
    assert kept["handoffs"] == [202]  # still waiting for a human
    assert kept["audit"] == (0, 1)
    assert kept["metrics"] == ["h:b1", "h:count"]
    assert db.read(lambda tx: tx.dead_letter(ids["dead"])).messages  # the dead letter still shows its burst
    assert _prune_all(db, batch=3) == {kind: [0] for kind in KINDS}  # a second pass finds nothing


def test_zero_days_keeps_a_kind_forever(db: Database) -> None:
    _seed(db)
    assert set(cutoffs({**{kind: 30 for kind in KINDS}, "deliveries": 0}, NOW)) == set(KINDS) - {"deliveries"}
    assert cutoffs({kind: 0.5 for kind in KINDS}, NOW)["jobs"] == pytest.approx(NOW - 0.5 * DAY)


def test_oldest_rows_kept(db: Database) -> None:
    assert db.read(oldest_rows).oldest is None
    _seed(db)
    kind, at = db.read(oldest_rows).oldest
    assert at == pytest.approx(OLD)
    _prune_all(db, batch=100)
    found = db.read(oldest_rows)
    assert found.by_kind["deliveries"] == pytest.approx(OLD)  # the unapplied one
    assert found.by_kind["outcomes"] == pytest.approx(RECENT)


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    """A SQLite state (what these tests check is SQLite's file itself)."""
    database = open_database(str(tmp_path / "db" / "r.db"), migrate=True)
    yield database
    database.close()


@pytest.mark.sqlite_only
def test_freed_space_goes_back_to_the_disk(sqlite_db: Database) -> None:
    db = sqlite_db

    def fill(tx: Tx) -> None:
        for n in range(2000):
            _delivery(tx, f"big-{n}", OLD, body="x" * 4000)
    db.write(fill)
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = db.storage()
    assert before.auto_vacuum == "incremental" and before.file_bytes > 8_000_000
    while db.write(lambda tx: prune_batch(tx, "deliveries", NOW, 500)):
        pass
    assert db.storage().reusable_bytes > 7_000_000  # free inside the file, not yet on the disk
    steps = []
    while (freed := db.give_back(256)) > 0:
        steps.append(freed)
    assert steps and max(steps) <= 256
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    after = db.storage()
    assert after.reusable_bytes == 0
    assert after.file_bytes < before.file_bytes / 4


def _old_version_file(path: Path, conversations: int) -> None:
    """A state file as the connector wrote it before 0005: no auto-vacuum, some data."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    MIGRATIONS.apply(SqliteUtils(conn), stop_before="0005_lifecycle")
    for n in range(1, conversations + 1):
        conn.execute("INSERT INTO conversations(account_id, conversation_id, contact_name, created_at, updated_at, "
                     "last_message_at) VALUES (1, ?, ?, 0, 0, ?)", (n, f"Contact {n}", float(n)))
    conn.close()


@pytest.mark.sqlite_only
def test_a_small_old_file_converts_at_start_and_keeps_every_row(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _old_version_file(path, 300)
    assert sqlite3.connect(path).execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    db = open_database(str(path), migrate=True)
    try:
        assert db.storage().auto_vacuum == "incremental"
        assert db.read(lambda tx: tx.conversations.count()) == 300
        assert db.read(lambda tx: tx.search.pending()) == 300  # indexed in the background
        found = db.read(lambda tx: tx.conversations.page(text="Contact 29"))
        assert sorted(c.conversation_id for c in found) == [29, *range(290, 300)]
        db.write(lambda tx: tx.search.index_pending(1000))
        assert [c.conversation_id for c in db.read(lambda tx: tx.conversations.page(text="Contact 299"))] == [299]
    finally:
        db.close()


@pytest.mark.sqlite_only
def test_a_large_old_file_waits_for_compact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(maintenance, "CONVERT_AT_START_BYTES", 0)
    path = tmp_path / "old.db"
    _old_version_file(path, 50)
    db = open_database(str(path), migrate=True)
    try:
        assert db.storage().auto_vacuum == "none"
        assert db.give_back(100) == 0  # nothing to do until it is converted
        db.compact()
        assert db.storage().auto_vacuum == "incremental"
        assert db.read(lambda tx: tx.conversations.count()) == 50
    finally:
        db.close()


@pytest.mark.sqlite_only
def test_compact_refuses_without_room_and_changes_nothing(sqlite_db: Database,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    db = sqlite_db

    class Tiny:
        free = 1
    monkeypatch.setattr(maintenance.shutil, "disk_usage", lambda _path: Tiny)
    with pytest.raises(Exception, match="needs about .* MiB of free disk"):
        db.compact()
    assert db.storage().auto_vacuum == "incremental"


def test_postgres_figures_are_the_database_size_and_space_is_autovacuums(tmp_path: Path) -> None:
    db = open_database(backends.state_location(tmp_path, backends.POSTGRES), migrate=True)
    try:
        def fill(tx: Tx) -> None:
            for n in range(500):
                _delivery(tx, f"big-{n}", OLD, body="x" * 4000)
        db.write(fill)
        figures = db.storage()
        assert figures.auto_vacuum == "autovacuum" and not figures.needs_compact
        assert figures.file_bytes > 1_000_000 and figures.wal_bytes == 0 and figures.reusable_bytes == 0
        while db.write(lambda tx: prune_batch(tx, "deliveries", NOW, 200)):
            pass
        assert db.read(lambda tx: tx.sql.scalar("SELECT count(*) FROM deliveries")) == 0
        assert db.give_back(256) == 0  # autovacuum's job, not ours
        with pytest.raises(StateError, match="autovacuum"):
            db.compact()  # VACUUM FULL would lock every table: never run by the connector
    finally:
        db.close()
