"""Provides summarize: what the bot achieved since a moment, per crew, per rule and in total.

Shared by ``GET /stats`` and the console's analytics screen, so both always agree. Rates are
per conversation the bot served (answered, drafted or handed off); a rate with nothing to divide
by is None, not 0, so "no data" never reads as "never".
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from state.tx import Tx

WINDOWS = {"24h": 24 * 3600.0, "7d": 7 * 24 * 3600.0}
"""The windows /stats and the console offer, by name."""


def _new_group() -> dict[str, Any]:
    return {"conversations": 0, "answered": 0, "resolved_by_bot": 0, "handoffs": 0, "handoff_reasons": {},
            "handoff_conversations": 0, "reopened": 0, "reminders": 0, "drafts": 0, "shadow_answers": 0,
            "csat_responses": 0, "csat_sum": 0.0, "latencies": []}


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _finish(group: dict[str, Any]) -> dict[str, Any]:
    served, latencies = group["conversations"], group.pop("latencies")
    csat_sum, responses = group.pop("csat_sum"), group["csat_responses"]
    handoff_conversations = group.pop("handoff_conversations")
    return {
        **group,
        "resolved_by_bot_rate": _ratio(group["resolved_by_bot"], served),
        "handoff_rate": _ratio(handoff_conversations, served),
        "reopen_rate": _ratio(group["reopened"], group["resolved_by_bot"]),
        "reply_latency_p50_seconds": _percentile(latencies, 0.50),
        "reply_latency_p95_seconds": _percentile(latencies, 0.95),
        "csat_average": round(csat_sum / responses, 2) if responses else None,
    }


def summarize(tx: Tx, since: float) -> dict[str, Any]:
    """``{"totals": {...}, "crews": {name: {...}}, "rules": {name: {...}}}`` for events since ``since``."""
    totals = _new_group()
    crews: dict[str, dict[str, Any]] = defaultdict(_new_group)
    rules: dict[str, dict[str, Any]] = defaultdict(_new_group)

    def groups(crew: str, rule: str) -> list[dict[str, Any]]:
        found = [totals, crews[crew or "-"]]
        if rule:
            found.append(rules[rule])
        return found

    for row in tx.outcomes.counts(since):
        kind, n = row["kind"], int(row["n"])
        for group in groups(row["crew"], row["rule"]):
            if kind == "answered":
                group["answered"] += n
            elif kind == "handoff":
                group["handoffs"] += n
                group["handoff_conversations"] += int(row["conversations"])
                reasons = group["handoff_reasons"]
                reasons[row["detail"]] = reasons.get(row["detail"], 0) + n
            elif kind == "resolved_by_bot":
                group["resolved_by_bot"] += int(row["conversations"])
            elif kind == "reopened":
                group["reopened"] += int(row["conversations"])
            elif kind == "csat":
                group["csat_responses"] += n
                group["csat_sum"] += float(row["total"] or 0)
            elif kind == "draft":
                group["drafts"] += n
            elif kind == "shadow":
                group["shadow_answers"] += n
            elif kind == "reminder":
                group["reminders"] += n
    for row in tx.outcomes.served(since):
        if row["crew"] is None:
            totals["conversations"] = int(row["conversations"])
            continue
        crews[row["crew"] or "-"]["conversations"] += int(row["conversations"])
        if row["rule"]:
            rules[row["rule"]]["conversations"] += int(row["conversations"])
    # Totals over groups double-count a conversation met by two crews; keep totals' own count and
    # cap the per-total handoff conversations by it.
    totals["handoff_conversations"] = min(totals["handoff_conversations"], totals["conversations"])
    for crew, rule, value in tx.outcomes.values("answered", since):
        for group in groups(crew, rule):
            group["latencies"].append(value)
    return {"totals": _finish(totals),
            "crews": {name: _finish(group) for name, group in sorted(crews.items())},
            "rules": {name: _finish(group) for name, group in sorted(rules.items())}}
