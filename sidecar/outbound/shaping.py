"""Provides shaping of a crew's answer before it is stored: hand-off packages, the after-hours
notice and split replies.

Shaping runs once, in the transaction that stores the answer (whichever way it came: a crew's
answer, a callback, the failure policy, a policy hand-off), so the stored actions are exactly
what will be posted; every retry expands them into the same steps with the same texts, which is
what lets the reply poster tell "maybe posted" from "never posted".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from connector_config.hours import describe_opening, is_open, next_opening
from connector_config.team import HANDOFF_CATEGORIES
from sidecar.config import Config
from sidecar.outbound.chatwoot import NO_TYPING_CHANNELS
from sidecar.queue.policy import after_hours_notice, hours_of
from sidecar.queue.routing import rule_label
from state import ConversationRow, Job, Tx
from state.vocabulary import AUTO

CATEGORY_TEXT = {
    "customer_request": "the customer asked for a human",
    "crew_failure": "the assistant could not answer",
    "low_confidence": "the assistant was not confident enough",
    "policy": "the bot does not serve this contact",
    "budget": "a safety budget was exceeded",
    "after_hours": "outside business hours",
    "other": "handed off by the assistant",
}
"""How a hand-off's category reads in its note."""

_SUMMARY_LINE_CHARS = 160
_ROLE_NAMES = {"customer": "Customer", "bot": "Bot", "agent": "Agent"}
_PARAGRAPHS = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


def handoff_labels(config: Config, category: str) -> list[str]:
    """``handoff.labels`` plus one naming the category (Chatwoot labels: letters, digits, ``-``, ``_``)."""
    labels = list(config.handoff.labels)
    return [*labels, f"handoff-{category.replace('_', '-')}"] if labels else []


def shape(tx: Tx, job: Job, actions: Sequence[dict[str, Any]], config: Config, now: float, *,
          category: str = "other") -> tuple[dict[str, Any], ...]:
    """The answer as it will be posted. ``category``: of a hand-off that does not name its own."""
    actions = tuple(actions)
    if job.mode != AUTO:
        return actions  # drafts, shadow answers and notices are posted as they are (see steps.expand)
    handoff = any(a.get("type") == "handoff" for a in actions)
    pacing = config.reply_pacing.channels
    if not handoff and not pacing and not config.inboxes:
        return actions  # nothing to shape: no statement spent
    conv = tx.conversations.get(job.account_id, job.conversation_id)
    if conv is None:
        return actions
    shaped: list[dict[str, Any]] = []
    for action in actions:
        kind = action.get("type")
        if kind == "handoff":
            shaped.append(_package(tx, job, conv, action, config, now, category))
        elif kind == "reply" and conv.channel in pacing and pacing[conv.channel].split:
            shaped.extend(_split(action, conv, config))
        else:
            shaped.append(action)
    if not handoff and any(a.get("type") == "reply" for a in shaped):
        notice = after_hours_notice(config, conv.inbox_id, now)
        if notice:
            shaped.append({"type": "reply", "content": notice})
    return tuple(shaped)


def _package(tx: Tx, job: Job, conv: ConversationRow, action: dict[str, Any], config: Config, now: float,
             default_category: str) -> dict[str, Any]:
    """A hand-off with its category, note (reason and summary), team, labels and reminder clock."""
    category = action.get("category")
    if category not in HANDOFF_CATEGORIES:
        category = default_category if default_category in HANDOFF_CATEGORIES else "other"
    reason = str(action.get("reason") or CATEGORY_TEXT[category])
    team = action.get("team_id")
    if not isinstance(team, int) or isinstance(team, bool):
        team = _rule_team(config, job.rule)
        if team is None:
            team = config.handoff.team_id
    hours = hours_of(config, conv.inbox_id)
    waiting_since = now
    opens = ""
    if hours is not None and not is_open(hours, now):
        # The team's clock starts when the team is back.
        opening = next_opening(hours, now)
        if opening is not None:
            waiting_since = opening.timestamp()
            opens = describe_opening(opening, now, hours)
    packaged = {**action, "type": "handoff", "category": category, "reason": reason,
                "labels": handoff_labels(config, category), "waiting_since": waiting_since,
                "crew": job.crew or "", "rule": job.rule}
    if team is not None:
        packaged["team_id"] = team
    if not action.get("no_note"):  # processing.failure_note off: the failure hand-off goes without one
        packaged["note"] = _note(tx, job, conv, category, reason, team, opens, config.handoff.summary_messages)
    return packaged


def _rule_team(config: Config, label: str) -> int | None:
    for index, rule in enumerate(config.routing.rules):
        if label and rule_label(rule, index) == label:
            return rule.handoff_team_id
    return None


def _note(tx: Tx, job: Job, conv: ConversationRow, category: str, reason: str, team: int | None, opens: str,
          summary_messages: int) -> str:
    lines = [f"Handed to a human ({category.replace('_', ' ')}): {reason}"]
    origin = [f"crew {job.crew}" if job.crew else "", f"rule {job.rule}" if job.rule else "",
              f"team {team}" if team is not None else ""]
    if any(origin):
        lines.append(" · ".join(x for x in origin if x))
    if opens:
        lines.append(f"Outside business hours: the team is back {opens}.")
    history = tx.messages.history(conv.account_id, conv.conversation_id, summary_messages) if summary_messages else []
    said = [m for m in history if m.role in _ROLE_NAMES and (m.content.strip() or m.attachments)]
    if said:
        lines.append("")
        lines.append("Conversation so far:")
        for message in said:
            text = " ".join(message.content.split()) or f"[{len(message.attachments)} attachment(s)]"
            if len(text) > _SUMMARY_LINE_CHARS:
                text = text[:_SUMMARY_LINE_CHARS - 1] + "…"
            lines.append(f"{_ROLE_NAMES[message.role]}: {text}")
    return "\n".join(lines)


def split_text(content: str, max_chars: int) -> list[str]:
    """Cuts a long answer at paragraph breaks (then sentence ends, then spaces), joining short
    paragraphs up to ``max_chars`` per part."""
    pieces: list[str] = []
    for paragraph in (p.strip() for p in _PARAGRAPHS.split(content)):
        if not paragraph:
            continue
        if len(paragraph) <= max_chars:
            pieces.append(paragraph)
            continue
        sentence_parts = _pack([s for s in _SENTENCE_END.split(paragraph) if s], max_chars, " ")
        for part in sentence_parts:
            pieces.extend(_hard_cut(part, max_chars) if len(part) > max_chars else [part])
    return _pack(pieces, max_chars, "\n\n") or [content]


def _pack(pieces: list[str], max_chars: int, glue: str) -> list[str]:
    parts: list[str] = []
    for piece in pieces:
        if parts and len(parts[-1]) + len(glue) + len(piece) <= max_chars:
            parts[-1] = parts[-1] + glue + piece
        else:
            parts.append(piece)
    return parts


def _hard_cut(text: str, max_chars: int) -> list[str]:
    parts: list[str] = []
    while len(text) > max_chars:
        cut = text.rfind(" ", 0, max_chars + 1)
        cut = cut if cut > 0 else max_chars
        parts.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    return [*parts, text] if text else parts


def _split(action: dict[str, Any], conv: ConversationRow, config: Config) -> list[dict[str, Any]]:
    pacing = config.reply_pacing.channels[conv.channel]
    content = str(action.get("content") or "")
    parts = split_text(content, pacing.max_chars)
    if len(parts) <= 1:
        return [action]
    typing = conv.channel not in NO_TYPING_CHANNELS
    out = [{**action, "content": parts[0]}]
    for part in parts[1:]:
        pause = min(pacing.max_pause_seconds, len(part) / pacing.chars_per_second)
        out.append({"type": "reply", "content": part, "pause": round(pause, 3), "typing": typing})
    return out
