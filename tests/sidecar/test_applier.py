"""Journal then apply: the acknowledged row is the whole truth; applying it is ordered and
survives bad rows. (Over real HTTP, the crash tests in tests/reliability cover the restart.)"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from sidecar.inbound.apply import ApplySettings, apply_pending, first_look, journal
from sidecar.inbound.payload import peek
from simulators.payloads import ChatwootWorld, message_event
from state import Database, open_database

SETTINGS = ApplySettings(inbox_ids=(), debounce_seconds=0.0, debounce_max_seconds=0.0, self_user_ids=())


@pytest.fixture
def store(tmp_path: Path) -> Database:
    return open_database(str(tmp_path / "c.db"), migrate=True)


def _journal(store: Database, body: str, delivery_id: str) -> bool:
    with store.transaction() as tx:
        return journal(tx, peek(json.loads(body)), body_text=body, delivery_id=delivery_id, now=time.time())


def _customer_says(world: ChatwootWorld, conv, text: str) -> str:  # noqa: ANN001
    return json.dumps(message_event(conv, world.customer_message(conv, text)))


def test_the_journal_alone_is_the_acknowledged_state(store: Database) -> None:
    world = ChatwootWorld()
    conv = world.open_conversation("whatsapp")
    body = _customer_says(world, conv, "oi")
    assert _journal(store, body, "d-1")
    assert not _journal(store, body, "d-1")  # the same delivery again
    assert not _journal(store, body, "d-2")  # the same message under another delivery id
    assert store.read(lambda tx: tx.journal.get("d-1")).outcome == "pending"
    assert store.read(lambda tx: tx.conversations.get(7, conv.display_id)) is None
    assert store.read(lambda tx: tx.journal.backlog())[0] == 1


def test_applying_follows_arrival_order_and_queues_work(store: Database) -> None:
    world = ChatwootWorld()
    conv = world.open_conversation("whatsapp")
    for i in range(5):
        _journal(store, _customer_says(world, conv, f"mensagem {i}"), f"d-{i}")
    with store.transaction() as tx:
        first = apply_pending(tx, SETTINGS, limit=2)
    with store.transaction() as tx:
        rest = apply_pending(tx, SETTINGS, limit=10)
    assert [a.delivery_id for a in first + rest] == [f"d-{i}" for i in range(5)]
    assert all(a.result.outcome == "accepted" for a in first + rest)
    assert store.read(lambda tx: tx.journal.backlog()) == (0, None)
    assert store.read(lambda tx: tx.conversations.get(7, conv.display_id)).last_message_preview == "mensagem 4"
    jobs = {a.result.job_id for a in first + rest}
    assert len(jobs) == 1  # one burst: the conversation's messages share the open job


def test_a_row_that_cannot_be_applied_is_failed_and_does_not_block_the_rest(store: Database) -> None:
    world = ChatwootWorld()
    conv = world.open_conversation("facebook")
    _journal(store, _customer_says(world, conv, "primeira"), "d-1")
    with store.transaction() as tx:  # a row no intake would write: the applier must still survive it
        tx.journal.insert(delivery_id="d-2", dedup_key=None, event="message_created", received_at=time.time(),
                          account_id=None, conversation_id=None, message_id=None, body="{not json")
    _journal(store, _customer_says(world, conv, "terceira"), "d-3")
    with store.transaction() as tx:
        applied = apply_pending(tx, SETTINGS, limit=10)
    assert [(a.delivery_id, a.result.outcome) for a in applied] == [
        ("d-1", "accepted"), ("d-2", "failed"), ("d-3", "accepted")]
    bad = store.read(lambda tx: tx.journal.get("d-2"))
    assert bad.outcome == "failed" and bad.reason == "could not be applied: JSONDecodeError"
    assert "JSONDecodeError" in applied[1].error
    assert store.read(lambda tx: tx.journal.backlog()) == (0, None)


def test_first_look_answers_from_the_payload_alone() -> None:
    world = ChatwootWorld()
    conv = world.open_conversation("webwidget", inbox_id=4)
    incoming = peek(message_event(conv, world.customer_message(conv, "hello")))
    assert first_look(incoming, SETTINGS.inbox_ids)[0] == "accepted"
    assert first_look(incoming, (99,)) == ("ignored", "inbox 4 is not served")
    empty = peek(message_event(conv, world.customer_message(conv, "   ")))
    assert first_look(empty, SETTINGS.inbox_ids) == ("ignored", "empty message")
    private = peek({**message_event(conv, world.customer_message(conv, "oi")), "private": True})
    assert first_look(private, SETTINGS.inbox_ids) == ("ignored", "private message")
    status = peek({"event": "conversation_status_changed", "id": conv.display_id})
    assert first_look(status, SETTINGS.inbox_ids)[0] == "ignored"


def test_a_hostile_event_name_never_reaches_a_reason_or_a_log_line(store: Database) -> None:
    huge = "x" * 300_000
    world = ChatwootWorld()
    conv = world.open_conversation("whatsapp")
    doc = message_event(conv, world.customer_message(conv, "oi"))
    doc["event"], doc["message_type"] = huge, huge
    assert first_look(peek(doc), SETTINGS.inbox_ids) == ("ignored", "other: stored for conversation state")
    body = json.dumps(doc)
    _journal(store, body, "d-huge")
    _journal(store, json.dumps({"event": huge}), "d-huge-2")
    with store.transaction() as tx:
        applied = apply_pending(tx, SETTINGS, limit=10)
    assert all(len(a.result.reason) < 100 for a in applied), [a.result.reason[:80] for a in applied]
