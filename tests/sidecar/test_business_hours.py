"""Business hours per inbox: open or closed in the inbox's own time zone, holidays closed all day;
outside them the bot answers, answers and says when humans are back, or hands off with an away
message and the team's reminder clock starting at the next opening."""

from __future__ import annotations

import datetime as dt
import time
import zoneinfo
from typing import Any

from connector_config import BusinessHours, section_from_mapping
from connector_config.hours import away_message, is_open, next_opening
from connector_config.team import DAYS
from simulators import FakeChatwoot, FakeCrew
from tests.conftest import SidecarFactory
from tests.harness import InProcessSidecar
from tests.waiting import wait_until

INBOX = 21  # the fake WhatsApp inbox


def _hours(raw: dict[str, Any]) -> BusinessHours:
    return section_from_mapping({"inboxes": {1: {"business_hours": raw}}}, "inboxes")[1].business_hours


def _epoch(text: str, zone: str = "UTC") -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=zoneinfo.ZoneInfo(zone)).timestamp()


# -- the calendar itself ------------------------------------------------------------------------
def test_open_and_closed_follow_the_inbox_zone_not_utc() -> None:
    hours = _hours({"timezone": "America/Sao_Paulo", "weekly": {"mon": "08:00-18:00"}})
    # Monday 2026-12-07 23:30 UTC is still Monday 20:30 in São Paulo (UTC-3): closed.
    assert not is_open(hours, _epoch("2026-12-07T23:30:00"))
    # Tuesday 2026-12-08 02:00 UTC is Monday 23:00 in São Paulo: closed; 11:00 UTC Monday is 08:00 there: open.
    assert not is_open(hours, _epoch("2026-12-08T02:00:00"))
    assert is_open(hours, _epoch("2026-12-07T11:00:00"))
    assert not is_open(hours, _epoch("2026-12-07T10:59:00"))
    opening = next_opening(hours, _epoch("2026-12-07T23:30:00"))
    assert opening is not None and opening.isoformat() == "2026-12-14T08:00:00-03:00"


def test_a_holiday_is_closed_all_day_and_the_away_message_names_the_next_opening() -> None:
    hours = _hours({"timezone": "Asia/Tokyo", "weekly": {d: "09:00-17:00" for d in DAYS[:5]},
                    "holidays": ["2026-12-31"], "away_message": "Back {opens_at}."})
    # Thursday 31 Dec 10:00 in Tokyo is a holiday; the next opening is Friday 1 Jan 09:00.
    at = _epoch("2026-12-31T10:00:00", "Asia/Tokyo")
    assert not is_open(hours, at)
    assert is_open(hours, _epoch("2026-12-30T10:00:00", "Asia/Tokyo"))
    assert away_message(hours, at) == "Back tomorrow at 09:00."
    friday_evening = _epoch("2027-01-01T18:00:00", "Asia/Tokyo")
    assert away_message(hours, friday_evening) == "Back on Monday 4 Jan at 09:00."


def test_spans_can_end_at_midnight_and_a_day_can_have_several() -> None:
    hours = _hours({"timezone": "UTC", "weekly": {"sat": ["00:00-02:00", "20:00-24:00"]}})
    assert is_open(hours, _epoch("2026-12-05T23:59:00")) and is_open(hours, _epoch("2026-12-05T01:00:00"))
    assert not is_open(hours, _epoch("2026-12-05T12:00:00"))


# -- the sidecar in-process, Chatwoot and the crew over HTTP -------------------------------------------------------------------------------
def _zone_on_another_date() -> tuple[str, dt.date]:
    """A zone whose date differs from UTC's right now (so a UTC-based calendar would be wrong)."""
    now = dt.datetime.now(dt.UTC)
    zone = "Pacific/Kiritimati" if now.hour >= 10 else "Pacific/Pago_Pago"  # UTC+14 / UTC-11
    local = now.astimezone(zoneinfo.ZoneInfo(zone)).date()
    assert local != now.date()
    return zone, local


def _inbox(after_hours: str, *, holiday: bool) -> tuple[dict[str, Any], str]:
    """Open all day on the zone's weekday only (closed on UTC's); with ``holiday``, today there is one."""
    zone, today = _zone_on_another_date()
    hours: dict[str, Any] = {"timezone": zone, "weekly": {DAYS[today.weekday()]: "00:00-24:00"},
                             "after_hours": after_hours, "away_message": "We are back {opens_at}."}
    if holiday:
        hours["holidays"] = [today.isoformat()]
    return {"inboxes": {INBOX: {"business_hours": hours}}}, f"on {(today + dt.timedelta(days=7)).strftime('%A')}"


async def test_open_in_the_inbox_zone_means_a_plain_answer(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    config, _ = _inbox("answer_and_notify", holiday=False)
    await sidecar_factory(config)
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "Quanto custa a barraca?")
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)
    assert "We are back" not in (chatwoot.replies(conv.display_id)[0] or "")


async def test_on_a_holiday_answer_and_notify_adds_when_humans_are_back(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    config, next_week = _inbox("answer_and_notify", holiday=True)
    await sidecar_factory(config)
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "Quanto custa a barraca?")
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 2)
    answer, notice = chatwoot.replies(conv.display_id)
    assert "R$ 899,90" in (answer or "")
    assert notice is not None and notice.startswith(f"We are back {next_week}") and notice.endswith("at 00:00.")


async def test_on_a_holiday_handoff_queues_for_the_next_opening(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    config, next_week = _inbox("handoff", holiday=True)
    config["handoff"] = {"remind_after_minutes": 0.01}
    sidecar = await sidecar_factory(config)
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "Preciso de ajuda com a troca")
    await chatwoot.wait_for(lambda: "handoff-after-hours" in chatwoot.labels_of(conv.display_id))
    [away] = chatwoot.replies(conv.display_id)
    assert away is not None and away.startswith(f"We are back {next_week}")
    [note] = chatwoot.notes(conv.display_id)
    assert note.startswith("Handed to a human (after hours): outside business hours")
    assert f"Outside business hours: the team is back {next_week}" in note
    assert crew.crew_requests() == []
    [handoff] = await wait_until(lambda: sidecar.query(lambda tx: tx.handoffs.for_conversation(7, conv.display_id)),
                                 what="hand-off recorded")
    # The team's reminder clock starts when the team is back (about a week from now), not now:
    # no reminder although remind_after_minutes is under a second.
    assert handoff.waiting_since > time.time() + 5 * 86400
    await wait_until(lambda: _metrics_say(sidecar, "connector_handoffs_waiting 1"),
                     what="a watchdog round counted the hand-off as waiting")
    [handoff] = sidecar.query(lambda tx: tx.handoffs.for_conversation(7, conv.display_id))
    assert handoff.reminded_at is None and len(chatwoot.notes(conv.display_id)) == 1


async def _metrics_say(sidecar: InProcessSidecar, line: str) -> bool:
    _, _, text = await sidecar.client.get("/metrics")
    return line in text.splitlines()
