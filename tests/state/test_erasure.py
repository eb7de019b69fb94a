"""Erasure in the state, on both back-ends: the person's text is gone from every table, counts
stay, the audit trail says who and how many. SQLite: once the index is merged and the space given
back, from the file's bytes too; PostgreSQL: the old row versions are vacuumed away at once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from state import Database, Tx, open_database
from state.analytics import summarize
from state.erasure import BadTarget, Target, forget
from state.vocabulary import SEARCH_PURGE
from tests import backends
from tests.seeding import every_text

NAME = "Zenóbia Quaresma"
PHONE = "+5511987650042"
SECRET = "meu cartão termina em 4242 e moro na Rua Xylofone 77"
OTHER = "Outra Pessoa Qualquer"
NOW = time.time()
TRACES = ("Zenóbia", "Quaresma", PHONE, "Xylofone", "termina em 4242")


def _conversation(tx: Tx, conversation_id: int, contact_id: int, name: str, text: str, *, account_id: int = 1,
                  dead: bool = False) -> None:
    contact = {"id": contact_id, "name": name, "phone_number": PHONE if contact_id == 42 else ""}
    tx.conversations.upsert(account_id, conversation_id, NOW, contact_id=contact_id, contact_name=name,
                            contact_json=contact, last_message_preview=text[:40], last_message_at=NOW,
                            channel="whatsapp")
    body = json.dumps({"event": "message_created", "content": text, "sender": contact,
                       "conversation": {"id": conversation_id}}, ensure_ascii=False)
    for n, outcome in ((1, "accepted"), (2, "pending")):
        tx.journal.insert(delivery_id=f"d{conversation_id}-{n}", dedup_key=f"k{conversation_id}-{n}",
                          event="message_created", received_at=NOW, account_id=account_id,
                          conversation_id=conversation_id, message_id=None, body=body, outcome=outcome)
    message_id = conversation_id * 100
    tx.messages.insert(account_id=account_id, conversation_id=conversation_id, message_id=message_id,
                       role="customer", sender_type="contact", sender_id=contact_id, content=text,
                       content_type="text", attachments=[{"data_url": f"https://x/{name}.jpg"}], private=False,
                       content_hash="digest-of-text", created_at=NOW)
    job = tx.jobs.enqueue(account_id, conversation_id, message_id, NOW, 0, 0, new_conversation=True)
    tx.sql.execute("UPDATE jobs SET envelope=?, state=?, last_error=? WHERE id=?",
                   (json.dumps({"contact": contact, "messages": [text]}, ensure_ascii=False),
                    "dead" if dead else "pending", f"crew said: {text}" if dead else "", job))
    tx.decisions.record(job_id=job, account_id=account_id, conversation_id=conversation_id, crew="c",
                        source="engine", reason=f"customer {name} asked", confidence=0.9, now=NOW)
    tx.decisions.record_attempt(job_id=job, request_id=f"r{job}", crew="c", backend="http", attempt=1,
                                started_at=NOW, duration=1.0, outcome="failed", status_code=422, error=f"422: {text}")
    tx.effects.begin(job, 0, "reply", account_id, conversation_id, "digest-of-reply", NOW)
    tx.outcomes.record("shadow", account_id=account_id, conversation_id=conversation_id, crew="c", rule="r",
                       now=NOW, detail=f"Olá {name}!")
    tx.outcomes.record("answered", account_id=account_id, conversation_id=conversation_id, crew="c", rule="r",
                       now=NOW, value=2.0)
    tx.handoffs.record(account_id=account_id, conversation_id=conversation_id, job_id=job, category="other",
                       reason=f"{name} wants a human", crew="c", rule="r", team_id=None, now=NOW)


def _seed(db: Database) -> None:
    def unit(tx: Tx) -> None:
        _conversation(tx, 7, 42, NAME, SECRET)
        _conversation(tx, 8, 42, NAME, f"segunda conversa de {NAME}", dead=True)
        _conversation(tx, 9, 55, OTHER, "nada a esconder")
        tx.journal.insert(delivery_id="contact-event", dedup_key=None, event="contact_updated", received_at=NOW,
                          account_id=1, conversation_id=None, message_id=None,
                          body=json.dumps({"event": "contact_updated", "id": 42, "name": NAME, "phone_number": PHONE,
                                           "account": {"id": 1}}, ensure_ascii=False))
        tx.journal.insert(delivery_id="other-event", dedup_key=None, event="contact_updated", received_at=NOW,
                          account_id=1, conversation_id=None, message_id=None,
                          body=json.dumps({"event": "contact_updated", "id": 55, "name": OTHER, "note": "42"}))
    db.write(unit)
    while db.write(lambda tx: tx.search.index_pending(100) if tx.search is not None else 0):
        pass


def _every_text(db: Database) -> str:
    """Every value of every row of every table (blobs decoded), as one text."""
    return db.read(every_text)


@pytest.fixture
def seeded(db: Database) -> Database:
    """A state of either back-end (tests/state/conftest.py) with the contact's conversations."""
    _seed(db)
    return db


@pytest.fixture
def seeded_sqlite(tmp_path: Path) -> Iterator[Database]:
    db = open_database(str(tmp_path / "e.db"), migrate=True)
    _seed(db)
    yield db
    db.close()


def test_forgetting_a_contact_leaves_no_text_in_any_table_and_keeps_counts(seeded: Database) -> None:
    before_text = _every_text(seeded)
    assert all(trace in before_text for trace in TRACES)
    counts_before = seeded.read(lambda tx: (tx.sql.scalar("SELECT count(*) FROM messages"),
                                            tx.sql.scalar("SELECT count(*) FROM outcomes"),
                                            summarize(tx, NOW - 3600)["totals"]["answered"]))
    erasure, _wal = seeded.erase(lambda tx: forget(tx, Target(contact_id=42), actor="cli:ops", now=NOW))
    assert erasure.target == "contact 42"
    assert erasure.counts() == {"conversations": 2, "messages": 2, "deliveries": 5, "jobs": 2, "cancelled_jobs": 1,
                                "discarded_dead_letters": 1, "decisions": 2, "outcomes": 2, "handoffs": 2,
                                "actions": 2}
    text = _every_text(seeded)
    for trace in TRACES:
        assert trace not in text, trace
    assert OTHER in text and "nada a esconder" in text  # someone else's rows are untouched
    assert seeded.read(lambda tx: (tx.sql.scalar("SELECT count(*) FROM messages"),
                                   tx.sql.scalar("SELECT count(*) FROM outcomes"),
                                   summarize(tx, NOW - 3600)["totals"]["answered"])) == counts_before
    states = seeded.read(lambda tx: tx.sql.all("SELECT conversation_id, state FROM jobs ORDER BY id"))
    assert [(r["conversation_id"], r["state"]) for r in states] == [(7, "cancelled"), (8, "discarded"), (9, "pending")]
    outcomes = seeded.read(lambda tx: tx.journal.counts())
    # Conversation 9's own and the two contact events are still to be applied; 7's and 8's are closed.
    assert outcomes == {"accepted": 3, "ignored": 2, "pending": 3}
    [audit] = seeded.read(lambda tx: tx.audit.operator_actions())
    assert (audit.actor, audit.action, audit.target) == ("cli:ops", "forget", "contact 42")
    assert json.loads(audit.detail)["messages"] == 2 and NAME not in audit.detail
    assert seeded.read(lambda tx: [c.conversation_id for c in tx.conversations.page(text="Zenóbia")]) == []
    assert seeded.read(lambda tx: tx.documents.get(SEARCH_PURGE)) == pytest.approx(NOW)


@pytest.mark.sqlite_only
def test_no_trace_in_the_file_once_the_index_is_merged_and_space_given_back(seeded_sqlite: Database,
                                                                            tmp_path: Path) -> None:
    """Zeroing on, the index merged into one segment, the free pages returned and the WAL emptied:
    the erased texts are nowhere in the file's bytes either."""
    seeded = seeded_sqlite
    seeded.erase(lambda tx: forget(tx, Target(contact_id=42), actor="api:test", now=NOW))
    while seeded.erase(lambda tx: tx.search.merge_step(-64), clear_wal=False)[0]:
        pass
    while seeded.give_back(256):
        pass
    assert seeded.clear_wal()
    raw = (tmp_path / "e.db").read_bytes()
    for trace in TRACES:
        assert trace.encode() not in raw, trace
    assert OTHER.encode() in raw


def test_forgetting_one_conversation(seeded: Database) -> None:
    erasure, _ = seeded.erase(lambda tx: forget(tx, Target(conversation_id=7), actor="api:x", now=NOW))
    assert erasure.target == "conversation 7" and erasure.conversations == 1
    text = _every_text(seeded)
    assert "Xylofone" not in text
    assert "segunda conversa" in text  # the contact's other conversation stays


@pytest.mark.parametrize(("target", "key"), [
    ({}, "contact_id"),
    ({"contact_id": 42, "conversation_id": 7}, "contact_id"),
    ({"contact_id": 0}, "contact_id"),
    ({"contact_id": True}, "contact_id"),
    ({"conversation_id": "7"}, "conversation_id"),
    ({"conversation_id": 7, "account_id": -1}, "account_id"),
])
def test_a_bad_target_is_refused(target: dict[str, object], key: str) -> None:
    with pytest.raises(BadTarget) as caught:
        Target(**target)  # type: ignore[arg-type]
    assert caught.value.key == key


def test_an_ambiguous_conversation_number_changes_nothing(seeded: Database) -> None:
    seeded.write(lambda tx: _conversation(tx, 7, 77, "Conta Dois", "texto da conta dois", account_id=2))
    before = _every_text(seeded)
    with pytest.raises(BadTarget, match="conversation 7 exists in accounts 1, 2"):
        seeded.erase(lambda tx: forget(tx, Target(conversation_id=7), actor="cli", now=NOW))
    assert _every_text(seeded) == before
    erasure, _ = seeded.erase(lambda tx: forget(tx, Target(conversation_id=7, account_id=2), actor="cli", now=NOW))
    assert erasure.target == "conversation 2/7" and erasure.conversations == 1


def test_nobody_stored_is_not_an_error(seeded: Database) -> None:
    erasure, _ = seeded.erase(lambda tx: forget(tx, Target(contact_id=999), actor="cli", now=NOW))
    assert erasure.nothing
    assert seeded.read(lambda tx: tx.audit.operator_actions())[0].target == "contact 999"


def test_postgres_vacuums_the_old_row_versions_after_an_erasure(tmp_path: Path) -> None:
    """On PostgreSQL the UPDATEs leave the old row versions (with the text) as dead tuples until
    vacuumed: the erasure runs a plain VACUUM of the tables it touched right after its commit."""
    db = open_database(backends.state_location(tmp_path, backends.POSTGRES), migrate=True)
    try:
        _seed(db)
        erasure, vacuumed = db.erase(lambda tx: forget(tx, Target(contact_id=42), actor="cli:ops", now=NOW))
        assert erasure.messages == 2 and vacuumed
        text = _every_text(db)
        assert not [trace for trace in TRACES if trace in text]
        # As the API does it: no VACUUM inline; the worker's purge (search.purge) runs it later.
        _erasure, vacuumed = db.erase(lambda tx: forget(tx, Target(contact_id=55), actor="api:x", now=NOW),
                                      clear_wal=False)
        assert not vacuumed and db.read(lambda tx: tx.documents.get(SEARCH_PURGE)) == pytest.approx(NOW)
        assert db.clear_wal()
    finally:
        db.close()
