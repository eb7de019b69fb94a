"""Provides the team's policy around a crew turn: the conversation's mode, and the reasons a
conversation goes to a human before any crew is asked.

Checked in the transaction that claims a job (sidecar.queue.crew_step), in this order: who the
bot serves (``contacts``: ``policy``), a customer asking for a human (``handoff.customer_keywords``:
``customer_request``), the safety budgets (``budget``), and business hours (``after_hours``, when
the inbox hands off outside them). Only a conversation in ``auto`` mode is handed off: a draft or
shadow conversation is the agents' anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from connector_config.hours import away_message, is_open
from connector_config.team import BusinessHours, contact_matches
from sidecar.config import Config, RoutingRule
from sidecar.inbound.payload import content_hash
from sidecar.queue.routing import keyword_hit
from state import ConversationRow, MessageRow, Tx
from state.vocabulary import PASSIVE_MODES

_HOUR, _MINUTE = 3600.0, 60.0
_LOOP_REPEATS = 3
"""The same customer text this many times in a row looks like another bot."""
_LOOP_LOOKBACK = 12
"""Messages (bot and customer) the loop guard looks at."""


@dataclass(frozen=True, slots=True)
class HandOff:
    """A reason to hand the conversation to a human instead of asking a crew."""

    category: str
    reason: str
    message: str = ""
    """Told to the customer (empty: nothing)."""


def rule_at(config: Config, index: int | None) -> RoutingRule | None:
    rules = config.routing.rules
    return rules[index] if index is not None and 0 <= index < len(rules) else None


def mode_for(config: Config, rule_index: int | None, inbox_id: int | None) -> str:
    """A rule's own mode wins, then the inbox's, then ``routing.mode``."""
    rule = rule_at(config, rule_index)
    if rule is not None and rule.mode:
        return rule.mode
    inbox = config.inboxes.get(inbox_id) if inbox_id is not None else None
    if inbox is not None and inbox.mode:
        return inbox.mode
    return config.routing.mode


def may_be_passive(config: Config, inbox_id: int | None, stored_mode: str) -> bool:
    """Whether a customer message in a conversation a human owns may still need a crew (a draft
    or a shadow answer): applying a delivery queues it then, and routing decides for sure."""
    if stored_mode in PASSIVE_MODES or config.routing.mode in PASSIVE_MODES:
        return True
    inbox = config.inboxes.get(inbox_id) if inbox_id is not None else None
    if inbox is not None and inbox.mode in PASSIVE_MODES:
        return True
    return any(rule.mode in PASSIVE_MODES for rule in config.routing.rules)


def hours_of(config: Config, inbox_id: int | None) -> BusinessHours | None:
    inbox = config.inboxes.get(inbox_id) if inbox_id is not None else None
    return inbox.business_hours if inbox is not None else None


def before_crew(tx: Tx, config: Config, conv: ConversationRow, burst: Sequence[MessageRow], text: str,
                now: float) -> HandOff | None:
    """Why this turn goes to a human without asking a crew, or None."""
    return (_contacts(config, conv) or _customer_asks(config, text) or _budgets(tx, config, conv, burst, now)
            or _after_hours(config, conv, now))


def _contacts(config: Config, conv: ConversationRow) -> HandOff | None:
    contacts = config.contacts
    if not contacts.allow and not contacts.deny:
        return None
    denied = contact_matches(contacts.deny, conv.contact, conv.labels)
    if denied is not None:
        return HandOff("policy", f"contact is on contacts.deny ({denied})")
    if contacts.allow and contact_matches(contacts.allow, conv.contact, conv.labels) is None:
        return HandOff("policy", "contact is not on contacts.allow")
    return None


def _customer_asks(config: Config, text: str) -> HandOff | None:
    hit = keyword_hit(config.handoff.customer_keywords, text)
    if hit is None:
        return None
    return HandOff("customer_request", f"customer asked for a human ({hit!r})", config.handoff.customer_message)


def _budgets(tx: Tx, config: Config, conv: ConversationRow, burst: Sequence[MessageRow], now: float
             ) -> HandOff | None:
    budgets = config.budgets
    if budgets.loop_guard:
        looping = _looping(tx, conv, burst)
        if looping:
            return HandOff("budget", f"loop guard: {looping}")
    limits = (budgets.max_replies_per_conversation_per_hour, budgets.max_bot_turns,
              budgets.max_messages_per_contact_per_minute)
    if not any(limits):
        return None
    hour, ever, contact_minute = tx.outcomes.budget_figures(conv.account_id, conv.conversation_id, conv.contact_id,
                                                            now - _HOUR, now - _MINUTE)
    per_hour, turns, per_minute = limits
    if per_hour and hour >= per_hour:
        return HandOff("budget", f"the bot answered {hour} times in the last hour "
                                 f"(budgets.max_replies_per_conversation_per_hour: {per_hour})")
    if turns and ever >= turns:
        return HandOff("budget", f"the bot answered {ever} times in this conversation "
                                 f"(budgets.max_bot_turns: {turns})")
    if per_minute and conv.contact_id is not None and contact_minute > per_minute:
        return HandOff("budget", f"the contact sent {contact_minute} messages in the last minute "
                                 f"(budgets.max_messages_per_contact_per_minute: {per_minute})")
    return None


def _looping(tx: Tx, conv: ConversationRow, burst: Sequence[MessageRow]) -> str:
    """Another bot answering ours: the customer sends back one of the bot's recent replies, or
    the same text several times in a row."""
    recent = tx.messages.recent_hashes(conv.account_id, conv.conversation_id, _LOOP_LOOKBACK)
    bot = {digest for role, digest in recent if role == "bot"}
    said = [content_hash(m.content) for m in burst if m.content.strip()]
    if any(digest in bot for digest in said):
        return "the customer's message repeats one of the bot's replies"
    customer = [digest for role, digest in recent if role == "customer"][:_LOOP_REPEATS]
    if len(customer) == _LOOP_REPEATS and len(set(customer)) == 1 and said:
        return f"the same customer message {_LOOP_REPEATS} times in a row"
    return ""


def _after_hours(config: Config, conv: ConversationRow, now: float) -> HandOff | None:
    hours = hours_of(config, conv.inbox_id)
    if hours is None or hours.after_hours != "handoff" or is_open(hours, now):
        return None
    return HandOff("after_hours", "outside business hours", away_message(hours, now))


def after_hours_notice(config: Config, inbox_id: int | None, now: float) -> str:
    """The away message to add to the bot's answer (``answer_and_notify`` while closed), or ''."""
    hours = hours_of(config, inbox_id)
    if hours is None or hours.after_hours != "answer_and_notify" or is_open(hours, now):
        return ""
    return away_message(hours, now)
