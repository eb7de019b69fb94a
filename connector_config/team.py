"""Provides the schema of what a support team sets beyond routing: modes, hand-offs, business hours,
safety budgets, who the bot serves, and how replies are paced on messaging channels."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from connector_config.errors import Refused, kind
from connector_config.fields import Flag, Int, Name, OneOrMany, Seconds, Text
from connector_config.records import _Section, section

Mode = Literal["auto", "draft", "shadow"]
"""``auto``: the crew answers the customer. ``draft``: its answer is posted as a private note for
an agent to send. ``shadow``: its answer is only recorded; nothing is written to Chatwoot."""

HANDOFF_CATEGORIES: tuple[str, ...] = ("customer_request", "crew_failure", "low_confidence", "policy", "budget",
                                       "after_hours", "other")
"""Why a conversation went to a human (every hand-off carries one)."""

AfterHours = Literal["answer", "answer_and_notify", "handoff"]
"""Outside business hours: answer as usual; answer and say when humans are back; or hand off
(with the away message) so the team finds it at the next opening."""

DAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPAN = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_CONTACT = re.compile(r"^(phone|email|id|label):(.+)$")


def _span(value: Any) -> tuple[int, int]:
    """``"08:00-18:00"`` as minutes since midnight (an end of 24:00 is midnight)."""
    if not isinstance(value, str):
        raise Refused(f"must be a time span like 08:00-18:00, not {kind(value)}")
    match = _SPAN.match(value)
    if not match:
        raise Refused("must be a time span like 08:00-18:00")
    h1, m1, h2, m2 = (int(x) for x in match.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if h1 > 23 or m1 > 59 or m2 > 59 or end > 24 * 60 or end <= start:
        raise Refused("must be a time span like 08:00-18:00 that ends after it starts")
    return start, end


Span = Annotated[tuple[int, int], BeforeValidator(_span)]


def _timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise Refused("is not a known time zone (an IANA name like America/Sao_Paulo)") from None
    return value


def _date(value: Any) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value  # YAML reads 2026-12-25 as a date
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise Refused("must be a date like 2026-12-25")


def _contact_rule(value: Any) -> str:
    if not isinstance(value, str) or not _CONTACT.match(value.strip()):
        raise Refused("must be phone:<number>, email:<address>, id:<contact id> or label:<label>")
    return value.strip()


ContactRule = Annotated[str, BeforeValidator(_contact_rule)]
Spans = Annotated[tuple[Span, ...], OneOrMany]


@section
class BusinessHours(_Section):
    """When humans are there, in the inbox's time zone."""

    timezone: Annotated[Name, AfterValidator(_timezone)] = "UTC"
    """IANA time zone name, e.g. America/Sao_Paulo."""
    weekly: dict[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], Spans] = Field(default_factory=dict)
    """Opening spans per day (``mon: "08:00-18:00"`` or a list of spans); a day not listed is closed."""
    holidays: tuple[Annotated[dt.date, BeforeValidator(_date)], ...] = ()
    """Dates (in the time zone) closed all day."""
    after_hours: AfterHours = "answer"
    """``answer``, ``answer_and_notify`` (also say when humans are back) or ``handoff``."""
    away_message: Text = "Our team is away right now; we are back {opens_at}."
    """Told to the customer after hours (``answer_and_notify``, ``handoff``); ``{opens_at}`` is the
    next opening in the inbox's time zone."""


@section
class InboxConfig(_Section):
    """What one inbox (key: its Chatwoot id) does differently."""

    mode: Mode | None = None
    """The inbox's mode; a routing rule's own mode wins. Empty: ``routing.mode``."""
    business_hours: BusinessHours | None = None
    """Empty: always open."""


def _inboxes_from_file(value: Any) -> Any:
    """``inboxes:`` maps Chatwoot inbox ids (numbers, or numeric strings) to settings."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise Refused(f"must be a mapping of inbox ids to their settings, not {kind(value)}")
    out: dict[int, Any] = {}
    for key, settings in value.items():
        text = str(key).strip()
        if isinstance(key, bool) or not text.isdigit() or int(text) < 1:
            raise Refused("inbox ids must be whole numbers >= 1", at=text or "?")
        out[int(text)] = settings if settings is not None else {}
    return out


Inboxes = Annotated[dict[int, InboxConfig], BeforeValidator(_inboxes_from_file)]


@section
class HandoffConfig(_Section):
    """What every hand-off carries, and the watchdog that reminds the team."""

    team_id: Int(1) | None = None
    """Team assigned at every hand-off (a rule's ``handoff_team_id`` wins). Empty: none."""
    labels: Annotated[tuple[Name, ...], OneOrMany] = ("handoff",)
    """Labels added at every hand-off (plus ``handoff-<category>``, e.g. ``handoff-after-hours``)."""
    summary_messages: Int(0, 50) = 6
    """Messages of the conversation summarised in the hand-off's private note."""
    customer_keywords: Annotated[tuple[Name, ...], OneOrMany] = ()
    """A customer message with one of these words or phrases (whole words, any case or accents) goes
    to a human at once (``customer_request``), before any crew is asked. Empty: the crews decide."""
    customer_message: Text = "Certo, vou chamar um atendente. / Sure, I'm getting a human agent for you."
    """Told to the customer when they asked for a human."""
    remind_after_minutes: Seconds() = 0.0
    """Minutes without a human reply after a hand-off before a reminder note is posted; 0: never."""
    escalation_team_id: Int(1) | None = None
    """With the reminder, the conversation is also assigned to this team. Empty: no escalation."""


@section
class BudgetsConfig(_Section):
    """Limits that force a hand-off (``budget``) when the bot would go too far; 0 switches one off."""

    max_replies_per_conversation_per_hour: Int(0) = 30
    """Bot answers in one conversation within an hour."""
    max_messages_per_contact_per_minute: Int(0) = 20
    """Messages one contact sent within a minute (a flood, or another bot)."""
    max_bot_turns: Int(0) = 100
    """Bot answers in one conversation, ever (a conversation this long needs a person)."""
    loop_guard: Flag = True
    """Another bot talking to ours: the customer's text repeats one of the bot's recent replies,
    or the same customer text arrives three times in a row."""


@section
class ContactsConfig(_Section):
    """Who the bot serves: ``phone:<number>``, ``email:<address>``, ``id:<contact id>``, ``label:<label>``."""

    allow: tuple[ContactRule, ...] = ()
    """If not empty, the bot serves only these contacts (others go to a human: ``policy``)."""
    deny: tuple[ContactRule, ...] = ()
    """The bot never answers these contacts (they go to a human: ``policy``)."""


@section
class ChannelPacing(_Section):
    """How a long answer is sent on one channel."""

    split: Flag = False
    """Send a long answer as several messages, cut at paragraph breaks."""
    max_chars: Int(20) = 600
    """Longest message of a split answer (paragraphs are joined up to this)."""
    chars_per_second: Int(1) = 40
    """"Typing" speed for the pause before each following part."""
    max_pause_seconds: Seconds() = 3.0
    """Longest pause between two parts."""


@section
class ReplyPacing(_Section):
    """Per channel (``whatsapp``, ``facebook``, ...); a channel not listed sends answers whole."""

    channels: dict[str, ChannelPacing] = Field(default_factory=dict)
    """Pacing per channel name (written at the top of ``reply_pacing:``)."""

    @model_validator(mode="before")
    @classmethod
    def _channels_at_top(cls, value: Any) -> Any:
        # The file says ``reply_pacing: {whatsapp: {...}}``: every key is a channel name.
        if not isinstance(value, Mapping):
            return value
        from connector_config.schema import CHANNELS

        channels = value["channels"] if "channels" in value else value
        if isinstance(channels, Mapping):
            for name in channels:
                if name not in CHANNELS:
                    raise Refused(f"must be one of {', '.join(CHANNELS)}", at=str(name))
        return {"channels": dict(channels)} if "channels" not in value else value


RuleMode = Mode | None
Categories = Literal["customer_request", "crew_failure", "low_confidence", "policy", "budget", "after_hours", "other"]


def contact_matches(rules: tuple[str, ...], contact: Mapping[str, Any], labels: tuple[str, ...]) -> str | None:
    """The first rule that names this contact (its phone, email, id or one of its conversation's
    labels), or None."""
    phone = str(contact.get("phone_number") or "").replace(" ", "")
    email = str(contact.get("email") or "").strip().lower()
    contact_id = str(contact.get("id") or "")
    for rule in rules:
        field, _, wanted = rule.partition(":")
        wanted = wanted.strip()
        if (field == "phone" and phone and phone == wanted.replace(" ", "")) or (
                field == "email" and email and email == wanted.lower()) or (
                field == "id" and contact_id and contact_id == wanted) or (
                field == "label" and wanted in labels):
            return rule
    return None


__all__ = ["DAYS", "HANDOFF_CATEGORIES", "AfterHours", "BudgetsConfig", "BusinessHours", "Categories",
           "ChannelPacing", "ContactsConfig", "HandoffConfig", "InboxConfig", "Inboxes", "Mode", "ReplyPacing",
           "RuleMode", "contact_matches"]
