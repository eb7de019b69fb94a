"""Provides the steps of a crew's answer: what each action becomes in Chatwoot, in which order.

Pure functions of the answer and the conversation's mode (no I/O): the reply poster
(:mod:`sidecar.outbound.replies`) posts these steps one by one, exactly once each; the queue's
failure policy builds its hand-off here too (:func:`failure_actions`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sidecar.inbound import ownership
from state.vocabulary import AUTO, DRAFT, SHADOW


@dataclass(frozen=True, slots=True)
class Step:
    op: str
    """``message``, ``status``, ``assign``, ``labels`` or ``owner``."""
    args: dict[str, Any] = field(default_factory=dict)
    changes_ownership: bool = False


def expand(actions: tuple[dict[str, Any], ...], mode: str = AUTO) -> list[Step]:
    """The answer's steps. A draft turns everything into private notes for the agents (the bot
    never speaks to the customer); a shadow answer has no steps at all (it is only recorded)."""
    if mode == SHADOW:
        return []
    if mode == DRAFT:
        return _draft_steps(actions)
    steps: list[Step] = []
    for action in actions:
        kind = action.get("type")
        if kind in ("reply", "note"):
            content = str(action.get("content") or "")
            if content.strip():
                args: dict[str, Any] = {"content": content, "private": kind == "note"}
                pause = action.get("pause")
                if kind == "reply" and isinstance(pause, int | float) and pause > 0:
                    args.update(pause=float(pause), typing=bool(action.get("typing")))
                steps.append(Step("message", args))
        elif kind == "handoff":
            steps.extend(_handoff_steps(action))
        elif kind == "labels":
            add = [x for x in action.get("add") or [] if isinstance(x, str)]
            if add:
                steps.append(Step("labels", {"add": add}))
        elif kind == "resolve":
            steps.append(Step("status", {"status": "resolved"}, True))
        elif kind == "assign" and isinstance(action.get("team_id"), int):
            # Only the sidecar's own notices use it (a reminder's escalation to a second team).
            steps.append(Step("assign", {"team_id": action["team_id"], "assignee_id": None}))
    return steps


def _handoff_steps(action: dict[str, Any]) -> list[Step]:
    """Owner first (so the echoed status change is not mistaken for a human's, and the hand-off is
    recorded for the reminder watchdog), then the customer's message, the note for the team, the
    status, the team and the labels."""
    reason = str(action.get("reason") or "handed off by the crew")
    category = str(action.get("category") or "other")
    record = {"category": category, "reason": reason, "crew": str(action.get("crew") or ""),
              "rule": str(action.get("rule") or ""),
              "team_id": action.get("team_id") if isinstance(action.get("team_id"), int) else None,
              "waiting_since": action.get("waiting_since") if isinstance(action.get("waiting_since"), int | float)
              else None}
    steps = [Step("owner", {"owner": ownership.HUMAN, "reason": f"handed off ({category}): {reason}",
                            "handoff": record}, True)]
    if isinstance(action.get("message"), str) and action["message"].strip():
        steps.append(Step("message", {"content": action["message"], "private": False}, True))
    if isinstance(action.get("note"), str) and action["note"].strip():
        steps.append(Step("message", {"content": action["note"], "private": True}, True))
    steps.append(Step("status", {"status": "open"}, True))
    team, assignee = action.get("team_id"), action.get("assignee_id")
    if isinstance(team, int) or isinstance(assignee, int):
        steps.append(Step("assign", {"team_id": team if isinstance(team, int) else None,
                                     "assignee_id": assignee if isinstance(assignee, int) else None}, True))
    labels = [x for x in action.get("labels") or [] if isinstance(x, str)]
    if labels:
        steps.append(Step("labels", {"add": labels}, True))
    return steps


def _draft_steps(actions: tuple[dict[str, Any], ...]) -> list[Step]:
    notes: list[str] = []
    for action in actions:
        kind = action.get("type")
        content = str(action.get("content") or "").strip()
        if kind == "reply" and content:
            notes.append(f"{DRAFT_PREFIX}\n\n{content}")
        elif kind == "note" and content:
            notes.append(content)
        elif kind == "handoff":
            reason = str(action.get("reason") or "the crew asked for a human")
            message = str(action.get("message") or "").strip()
            notes.append(f"Suggested: hand this conversation to a human ({reason})."
                         + (f"\n\n{DRAFT_PREFIX}\n\n{message}" if message else ""))
        elif kind == "resolve":
            notes.append("Suggested: resolve this conversation.")
    steps = [Step("message", {"content": text, "private": True}) for text in notes]
    for action in actions:
        if action.get("type") == "labels":
            add = [x for x in action.get("add") or [] if isinstance(x, str)]
            if add:
                steps.append(Step("labels", {"add": add}))
    return steps


DRAFT_PREFIX = "Suggested reply (draft, not sent to the customer):"
"""How a draft starts: agents copy what follows it."""


def failure_actions(reason: str, *, note: bool, handoff: bool, mode: str = AUTO) -> tuple[dict[str, Any], ...]:
    """The failure policy: hand over to a human with a note saying why (the hand-off package, or
    a plain note when hand-offs are off). A draft conversation only gets the note; a shadow crew's
    failure is only recorded."""
    text = f"The assistant could not answer this conversation: {reason}. A human agent should take over."
    if mode == SHADOW:
        return ()
    if handoff and mode == AUTO:
        return ({"type": "handoff", "category": "crew_failure", "reason": f"the assistant could not answer: {reason}",
                 **({} if note else {"no_note": True})},)
    return ({"type": "note", "content": text},) if note else ()
