"""Migration 0004's stores on both back-ends: shadow and notice jobs, hand-offs and their reminder
clock, outcome events and the analytics summary built on them, budget figures, inbox names."""

from __future__ import annotations

import time

import pytest

from state import Database, Route
from state.analytics import summarize


def _message(tx, conv: int, message_id: int, role: str, digest: str, at: float) -> None:  # type: ignore[no-untyped-def]
    tx.messages.insert(account_id=1, conversation_id=conv, message_id=message_id, role=role, sender_type="",
                       sender_id=None, content=digest, content_type="text", attachments=(), private=False,
                       content_hash=digest, created_at=at)


def test_a_shadow_job_runs_beside_its_live_job_once_and_never_blocks_it(db: Database) -> None:
    now = time.time()
    with db.transaction() as tx:
        live = tx.jobs.get(tx.jobs.enqueue(1, 2, 10, now, 0, 0))
        tx.jobs.claim("w1", now, 30, 1)
        # No confidence (None) and no rule name: the INSERT ... SELECT must still type its values.
        route = Route("shadowcrew", "http", "rules", "shadow crew of r1", None, "r1", "shadow")
        shadow = tx.jobs.add_shadow(live, route, "{}", now, request_id="shadow-1")
        again = tx.jobs.add_shadow(live, route, "{}", now, request_id="shadow-2")
        assert shadow is not None and again is None  # at most one per live job
        job = tx.jobs.get(shadow)
        assert (job.shadow_of, job.mode, job.rule, job.crew, job.route_confidence) == (live.id, "shadow", "r1",
                                                                                      "shadowcrew", None)
        assert job.message_ids == live.message_ids
        # The live job is in flight, and yet its shadow is claimable at once.
        assert [j.id for j in tx.jobs.claim("w2", now + 1, 30, 4)] == [shadow]
        # A new customer message opens a new burst, never joins the shadow job.
        newer = tx.jobs.enqueue(1, 2, 11, now + 1, 0, 0)
        assert newer not in (shadow, live.id)
        assert tx.jobs.newer_open(1, 2, live.id).id == newer  # type: ignore[union-attr]
        # The shadow (in flight) does not hold the conversation's next burst back.
        assert tx.jobs.finish(live.id, "w1", "done", "answered", "", now + 2)
        assert [j.id for j in tx.jobs.claim("w3", now + 2, 30, 4)] == [newer]


def test_a_notice_job_carries_its_actions_and_waits_its_turn(db: Database) -> None:
    now = time.time()
    with db.transaction() as tx:
        notice = tx.jobs.add_notice(1, 5, [{"type": "note", "content": "Reminder"}], "hand-off reminder", now)
        job = tx.jobs.get(notice)
        assert (job.mode, job.route_source, job.route_reason, job.message_ids) == ("notice", "notice",
                                                                                  "hand-off reminder", ())
        assert job.actions == ({"type": "note", "content": "Reminder"},)
        assert tx.jobs.next_due_at() == pytest.approx(now)
        assert [j.id for j in tx.jobs.claim("w1", now, 30, 4)] == [notice]


def test_hand_offs_wait_for_a_human_and_are_reminded_once(db: Database) -> None:
    now = time.time()
    with db.transaction() as tx:
        tx.handoffs.record(account_id=1, conversation_id=2, job_id=None, category="customer_request",
                           reason="asked for a human", crew="faq", rule="r1", team_id=4, now=now)
        # After hours: the clock starts at the next opening.
        tx.handoffs.record(account_id=1, conversation_id=3, job_id=7, category="after_hours", reason="closed",
                           crew="", rule="", team_id=None, now=now, waiting_since=now + 3600)
        assert tx.handoffs.waiting() == 2
        assert tx.handoffs.next_waiting_since() == pytest.approx(now)
        [due] = tx.handoffs.due_reminders(now + 60)
        assert (due.conversation_id, due.category, due.team_id, due.reminded_at) == (2, "customer_request", 4, None)
        assert tx.handoffs.mark_reminded(due.id, now + 60, escalated=True)
        assert not tx.handoffs.mark_reminded(due.id, now + 61, escalated=True)  # another watchdog: taken
        assert tx.handoffs.due_reminders(now + 60) == []
        assert tx.handoffs.human_replied(1, 3, now + 70) == 1
        assert tx.handoffs.waiting() == 0 and tx.handoffs.next_waiting_since() is None
        [reminded] = tx.handoffs.for_conversation(1, 2)
        assert reminded.escalated_at == pytest.approx(now + 60)


def test_outcomes_add_up_per_crew_rule_and_conversation(db: Database) -> None:
    now = time.time()
    with db.transaction() as tx:
        record = tx.outcomes.record
        record("answered", account_id=1, conversation_id=10, crew="faq", rule="r1", now=now, value=2.0)
        record("answered", account_id=1, conversation_id=10, crew="faq", rule="r1", now=now, value=4.0)
        record("answered", account_id=1, conversation_id=11, crew="sales", rule="", now=now, value=6.0)
        # Account 11 conversation 0 and account 1 conversation 10 must not be taken for one.
        record("handoff", account_id=11, conversation_id=0, crew="faq", rule="r1", now=now, detail="customer_request")
        record("resolved_by_bot", account_id=1, conversation_id=10, crew="faq", rule="r1", now=now)
        record("reopened", account_id=1, conversation_id=10, crew="faq", rule="r1", now=now)
        record("csat", account_id=1, conversation_id=10, crew="faq", rule="r1", now=now, value=5.0,
               detail="message 99")
        record("shadow", account_id=1, conversation_id=10, crew="shadowcrew", rule="r1", now=now, detail="hello")
        record("answered", account_id=1, conversation_id=12, crew="faq", rule="r1", now=now - 90_000, value=1.0)
        assert tx.outcomes.last_of(1, 10, ("resolved_by_bot", "reopened")) == "reopened"
        assert tx.outcomes.seen(1, 10, "csat", "message 99") and not tx.outcomes.seen(1, 10, "csat", "message 1")
        assert sorted(tx.outcomes.values("answered", now - 10)) == [("faq", "r1", 2.0), ("faq", "r1", 4.0),
                                                                    ("sales", "", 6.0)]
        served = {(r["crew"], r["rule"]): r["conversations"] for r in tx.outcomes.served(now - 10)}
        assert served == {("faq", "r1"): 2, ("sales", ""): 1, (None, None): 3}
        [shadow] = tx.outcomes.recent("shadow")
        assert shadow["detail"] == "hello" and shadow["value"] is None
        stats = summarize(tx, now - 10)
    totals = stats["totals"]
    assert (totals["conversations"], totals["answered"], totals["handoffs"], totals["resolved_by_bot"],
            totals["reopened"], totals["csat_responses"], totals["shadow_answers"]) == (3, 3, 1, 1, 1, 1, 1)
    assert totals["csat_average"] == 5.0 and totals["handoff_reasons"] == {"customer_request": 1}
    assert totals["reply_latency_p50_seconds"] == 4.0 and totals["handoff_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert stats["crews"]["faq"]["conversations"] == 2 and stats["rules"]["r1"]["answered"] == 2
    assert stats["crews"]["sales"]["reopen_rate"] is None


def test_budget_figures_recent_hashes_and_inbox_names(db: Database) -> None:
    now = time.time()
    with db.transaction() as tx:
        tx.conversations.upsert(1, 2, now, contact_id=77, inbox_id=3, inbox_name="WhatsApp", mode="draft",
                                rule="r1", remote_updated_at=now - 5)
        tx.conversations.upsert(1, 4, now, contact_id=77, inbox_id=3)
        _message(tx, 2, 100, "customer", "h1", now - 10)
        _message(tx, 4, 101, "customer", "h2", now - 120)  # over a minute ago
        _message(tx, 2, 102, "bot", "h3", now - 5)
        _message(tx, 2, 103, "agent", "h4", now - 4)
        for at in (now - 7200, now - 60):
            tx.outcomes.record("answered", account_id=1, conversation_id=2, crew="faq", rule="r1", now=at)
        assert tx.outcomes.budget_figures(1, 2, 77, now - 3600, now - 60) == (1, 2, 1)
        assert tx.outcomes.budget_figures(1, 2, None, now - 3600, now - 60) == (1, 2, 0)
        assert tx.messages.recent_hashes(1, 2, 5) == [("bot", "h3"), ("customer", "h1")]
        assert tx.conversations.inbox_names([3, 9]) == {3: "WhatsApp"}
        conv = tx.conversations.get(1, 2)
        assert conv is not None and (conv.mode, conv.rule, conv.remote_updated_at) == ("draft", "r1",
                                                                                       pytest.approx(now - 5))
        tx.decisions.record(job_id=None, account_id=1, conversation_id=2, crew="faq", source="rules", reason="r",
                            confidence=None, now=now, rule="r1", mode="draft")
        [decision] = tx.decisions.recent(10)
    assert (decision.rule, decision.mode) == ("r1", "draft")
