"""The database of either back-end: group commit, durability per commit, read-only access, schema checks."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from state import (
    Database,
    DatabaseMissing,
    SchemaMismatch,
    StateError,
    StorageUnavailable,
    Tx,
    open_database,
)


def _insert(delivery_id: str) -> object:
    def unit(tx: Tx) -> bool:
        return tx.journal.insert(delivery_id=delivery_id, dedup_key=None, event="e", received_at=time.time(),
                                 account_id=None, conversation_id=None, message_id=None, body="{}")
    return unit


def test_group_commit_isolates_a_failing_unit_and_commits_the_rest_once(db: Database) -> None:
    def boom(tx: Tx) -> None:
        tx.journal.insert(delivery_id="half", dedup_key=None, event="e", received_at=time.time(), account_id=None,
                          conversation_id=None, message_id=None, body="{}")
        raise ValueError("bug in one unit")

    outcomes = db.run_group([_insert("a"), boom, _insert("b"), _insert("a")], durable=True)
    assert [ok for ok, _ in outcomes] == [True, False, True, True]
    assert [value for ok, value in outcomes if ok] == [True, True, False]  # the second "a" is a duplicate
    assert isinstance(outcomes[1][1], ValueError)
    counts = db.read(lambda tx: tx.sql.column("SELECT delivery_id FROM deliveries ORDER BY id"))
    assert counts == ["a", "b"]  # the failing unit's half-write was undone alone


def test_a_lone_unit_that_fails_writes_nothing(db: Database) -> None:
    def boom(tx: Tx) -> None:
        _insert("x")(tx)
        raise ValueError("no")

    [(ok, exc)] = db.run_group([boom], durable=False)
    assert not ok and isinstance(exc, ValueError)
    assert db.read(lambda tx: tx.journal.counts()) == {}


def test_durability_is_chosen_per_commit(db: Database) -> None:
    def setting(tx: Tx | None = None) -> object:
        if db.kind == "sqlite":
            return db.conn.execute("PRAGMA synchronous").fetchone()[0]
        assert tx is not None  # PostgreSQL: set for the transaction only (SET LOCAL)
        return tx.sql.scalar("SHOW synchronous_commit")

    seen: list[object] = []
    db.run_group([lambda tx: (_insert("n")(tx), seen.append(setting(tx)))], durable=False)
    assert seen[-1] in (1, "off") or setting() == 1  # NORMAL / no wait for the WAL flush
    db.run_group([lambda tx: (_insert("f")(tx), seen.append(setting(tx)))], durable=True)
    assert seen[-1] in (2, "on") or setting() == 2  # FULL / the commit waits for its flush


def test_a_storage_error_fails_every_unit_of_the_group(db: Database, tmp_path: Path) -> None:
    def corrupt(tx: Tx) -> None:
        tx.sql.execute("INSERT INTO no_such_table VALUES (1)")

    outcomes = db.run_group([_insert("ok"), corrupt], durable=True)
    assert outcomes[0][0] and not outcomes[1][0] and isinstance(outcomes[1][1], StorageUnavailable)


def test_readers_cannot_write_and_see_committed_data(db: Database) -> None:
    db.run_group([_insert("d1")], durable=True)
    reader = open_database(db.location, readonly=True)
    try:
        assert reader.read(lambda tx: tx.journal.counts()) == {"pending": 1}
        with pytest.raises(StateError), reader.transaction():
            pass
        with pytest.raises(StorageUnavailable):
            reader.read(lambda tx: tx.sql.execute("DELETE FROM deliveries"))
        marker = reader.change_marker()
        db.run_group([_insert("d2")], durable=True)
        assert reader.change_marker() != marker
    finally:
        reader.close()


@pytest.mark.sqlite_only
def test_missing_and_foreign_databases_are_reported(tmp_path: Path) -> None:
    with pytest.raises(DatabaseMissing):
        open_database(str(tmp_path / "nope.db"), readonly=True)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(SchemaMismatch):
        open_database(str(other), readonly=True)


def test_the_health_probe_writes_and_reads_back(db: Database) -> None:
    assert db.probe_write() >= 0
