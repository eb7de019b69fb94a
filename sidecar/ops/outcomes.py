"""Provides recording of outcome events (analytics) together with their Prometheus counters.

An outcome row and its counter increments are written in the same transaction, so a unit that is
rolled back and run again (the writer's optimistic batches) never counts twice. The one frequent
event, ``answered``, is counted by the caller after its commit instead (:func:`count_answered`),
which keeps the hot path at one statement.
"""

from __future__ import annotations

import json

from sidecar.ops.metrics import Histogram, Metrics
from state import Tx

OUTCOMES_TOTAL = "connector_outcomes_total"
HANDOFFS_TOTAL = "connector_handoffs_total"
REPLY_LATENCY = "connector_reply_latency_seconds"
CSAT_TOTAL = "connector_csat_responses_total"

def _labels(**labels: str) -> str:
    return json.dumps(labels, sort_keys=True)


def record(tx: Tx, kind: str, *, account_id: int, conversation_id: int, crew: str, rule: str, now: float,
           value: float | None = None, detail: str = "") -> None:
    """One outcome event and its counters, in the caller's transaction."""
    tx.outcomes.record(kind, account_id=account_id, conversation_id=conversation_id, crew=crew, rule=rule,
                       now=now, value=value, detail=detail)
    rows = [(OUTCOMES_TOTAL, _labels(kind=kind, crew=crew, rule=rule), "counter", "", 1.0)]
    if kind == "handoff":
        rows.append((HANDOFFS_TOTAL, _labels(category=detail, crew=crew, rule=rule), "counter", "", 1.0))
    elif kind == "csat" and value is not None:
        rows.append((CSAT_TOTAL, _labels(rating=str(int(value)), crew=crew, rule=rule), "counter", "", 1.0))
    elif value is not None and kind == "answered":
        hist = Histogram()
        hist.observe(value)
        rows += [(REPLY_LATENCY, _labels(crew=crew, rule=rule), "histogram", part, v) for part, v in hist.parts()]
    tx.metrics.add(rows, now)


def count_answered(metrics: Metrics, *, crew: str, rule: str, latency: float) -> None:
    """The counters of an ``answered`` event whose row the caller committed."""
    metrics.inc(OUTCOMES_TOTAL, kind="answered", crew=crew, rule=rule)
    metrics.observe(REPLY_LATENCY, latency, crew=crew, rule=rule)
