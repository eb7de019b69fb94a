"""Provides the sidecar's metrics: counters and latency histograms that survive restarts.

Increments live in memory on the hot path and are added to the stored totals every second (and
at shutdown), so figures survive restarts, add up across processes and replicas, and the console
can read them. Gauges describe this process (or are read from the state when exposed).
"""

from __future__ import annotations

import bisect
import json
import math
import threading
from collections.abc import Iterable
from typing import Any

# Seconds; covers a sub-millisecond intake up to a slow crew.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

HELP = {
    "connector_webhooks_received_total": "Chatwoot deliveries by event and outcome",
    "connector_routing_decisions_total": "Routing decisions by crew and source",
    "connector_crew_requests_total": "Crew requests by crew and outcome",
    "connector_crew_request_duration_seconds": "Crew request latency",
    "connector_chatwoot_requests_total": "Chatwoot API calls by operation and outcome",
    "connector_chatwoot_request_duration_seconds": "Chatwoot API call latency",
    "connector_intake_duration_seconds": "Webhook intake latency (verify, store, commit)",
    "connector_apply_lag_seconds": "Time from a delivery's commit to its conversation state and queued work",
    "connector_routing_duration_seconds": "Routing decision latency",
    "connector_queue_depth": "Jobs waiting or in progress",
    "connector_dead_letters": "Jobs that gave up",
    "connector_jobs_dead_lettered_total": "Jobs moved to the dead letters since the state was created",
    "connector_config_reloads_total": "Config changes applied or refused, by source and outcome",
    "connector_background_restarts_total": "Background loops restarted after an unexpected error, by task",
    "connector_crew_in_flight": "Crew calls in flight, by crew back-end (all processes)",
    "connector_crew_in_flight_limit": "Most crew calls in flight allowed, by crew back-end",
    "connector_background_share": "Share of background work allowed while webhooks wait (1 = full speed)",
    "connector_outcomes_total": "Outcome events by kind (answered, handoff, resolved_by_bot, reopened, csat, draft, "
                                "shadow), crew and rule",
    "connector_handoffs_total": "Hand-offs to a human by category, crew and rule",
    "connector_reply_latency_seconds": "Seconds from the customer's first message of a turn to the bot's answer",
    "connector_csat_responses_total": "CSAT survey responses by rating, crew and rule",
    "connector_handoffs_waiting": "Hand-offs no human has answered yet (before their reminder)",
    "connector_database_size_bytes": "Size of the state's database file",
    "connector_database_wal_bytes": "Size of the state's write-ahead log",
    "connector_database_reusable_bytes": "Free space inside the database file (reused, then given back to the disk)",
    "connector_oldest_row_timestamp_seconds": "When the oldest row kept of each kind was written (Unix time)",
    "connector_retention_pruned_total": "Rows deleted by retention, by kind",
    "connector_retention_last_pass_timestamp_seconds": "When the latest retention pass ended (Unix time)",
}

TYPES = {
    "connector_webhooks_received_total": "counter",
    "connector_routing_decisions_total": "counter",
    "connector_crew_requests_total": "counter",
    "connector_crew_request_duration_seconds": "histogram",
    "connector_chatwoot_requests_total": "counter",
    "connector_chatwoot_request_duration_seconds": "histogram",
    "connector_intake_duration_seconds": "histogram",
    "connector_apply_lag_seconds": "histogram",
    "connector_routing_duration_seconds": "histogram",
    "connector_queue_depth": "gauge",
    "connector_dead_letters": "gauge",
    "connector_jobs_dead_lettered_total": "counter",
    "connector_config_reloads_total": "counter",
    "connector_background_restarts_total": "counter",
    "connector_crew_in_flight": "gauge",
    "connector_crew_in_flight_limit": "gauge",
    "connector_background_share": "gauge",
    "connector_outcomes_total": "counter",
    "connector_handoffs_total": "counter",
    "connector_reply_latency_seconds": "histogram",
    "connector_csat_responses_total": "counter",
    "connector_handoffs_waiting": "gauge",
    "connector_database_size_bytes": "gauge",
    "connector_database_wal_bytes": "gauge",
    "connector_database_reusable_bytes": "gauge",
    "connector_oldest_row_timestamp_seconds": "gauge",
    "connector_retention_pruned_total": "counter",
    "connector_retention_last_pass_timestamp_seconds": "gauge",
}
"""Exposed families and their type; each one is always listed, even before its first sample."""

LabelKey = tuple[tuple[str, str], ...]
MetricRow = tuple[str, str, str, str, float]
"""(name, labels as sorted JSON, kind, part, value): how the state stores a figure (state.stores.metrics)."""


def _key(labels: dict[str, str]) -> LabelKey:
    return tuple(sorted((k, str(v)) for k, v in labels.items()))


class Histogram:
    __slots__ = ("counts", "sum", "count")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, value)] += 1
        self.sum += value
        self.count += 1

    def add_part(self, part: str, value: float) -> None:
        if part == "sum":
            self.sum += value
        elif part == "count":
            self.count += int(value)
        elif part.startswith("b") and part[1:].isdigit() and int(part[1:]) < len(self.counts):
            self.counts[int(part[1:])] += int(value)

    def parts(self) -> list[tuple[str, float]]:
        out = [(f"b{i}", float(c)) for i, c in enumerate(self.counts) if c]
        return [*out, ("sum", self.sum), ("count", float(self.count))]

    def quantile(self, q: float) -> float | None:
        if self.count == 0:
            return None
        target = q * self.count
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= target:
                return BUCKETS[i] if i < len(BUCKETS) else float("inf")
        return None


class Snapshot:
    """Every figure as exposed: the stored totals (all processes) plus this process's increments
    not flushed yet, and this process's gauges."""

    def __init__(self) -> None:
        self.counters: dict[tuple[str, LabelKey], float] = {}
        self.gauges: dict[tuple[str, LabelKey], float] = {}
        self.histograms: dict[tuple[str, LabelKey], Histogram] = {}

    def add_row(self, name: str, labels: LabelKey, kind: str, part: str, value: float) -> None:
        key = (name, labels)
        if kind == "histogram":
            hist = self.histograms.get(key)
            if hist is None:
                hist = self.histograms[key] = Histogram()
            hist.add_part(part, value)
        else:
            self.counters[key] = self.counters.get(key, 0.0) + value

    def counter(self, name: str, **labels: str) -> float:
        return self.counters.get((name, _key(labels)), 0.0)

    def counter_total(self, name: str, **match: str) -> float:
        want = set(_key(match))
        return sum(v for (n, lk), v in self.counters.items() if n == name and want <= set(lk))

    def histogram(self, name: str, **labels: str) -> Histogram | None:
        return self.histograms.get((name, _key(labels)))

    # -- exposition -------------------------------------------------------------------
    def _families(self) -> dict[str, list[tuple[LabelKey, Any]]]:
        """Samples by exposed family name; every documented family is present, even empty."""
        families: dict[str, list[tuple[LabelKey, Any]]] = {name: [] for name in TYPES}
        items: list[tuple[str, LabelKey, Any]] = [(n, lk, v) for (n, lk), v in self.counters.items()]
        items += [(n, lk, v) for (n, lk), v in self.gauges.items()]
        items += [(n, lk, h) for (n, lk), h in self.histograms.items()]
        for name, lk, value in items:
            families.setdefault(name, []).append((lk, value))
        return families

    @staticmethod
    def _kind(name: str, entries: list[tuple[LabelKey, Any]]) -> str:
        if name in TYPES:
            return TYPES[name]
        if entries and isinstance(entries[0][1], Histogram):
            return "histogram"
        return "counter" if name.endswith("_total") else "gauge"

    def render_prometheus(self) -> str:
        """Prometheus text exposition format 0.0.4."""
        lines: list[str] = []
        families = self._families()
        for name in sorted(families):
            entries = sorted(families[name], key=lambda e: e[0])
            kind = self._kind(name, entries)
            lines.append(f"# HELP {name} {_escape_help(HELP.get(name, name))}")
            lines.append(f"# TYPE {name} {kind}")
            for lk, value in entries:
                if isinstance(value, Histogram):
                    if kind != "histogram":
                        continue
                    cumulative = 0
                    for bound, count in zip((*BUCKETS, math.inf), value.counts, strict=True):
                        cumulative += count
                        le = "+Inf" if bound == math.inf else repr(bound)
                        lines.append(f"{name}_bucket{_labels(lk + (('le', le),))} {cumulative}")
                    lines.append(f"{name}_sum{_labels(lk)} {_num(value.sum)}")
                    lines.append(f"{name}_count{_labels(lk)} {value.count}")
                elif kind != "histogram":
                    lines.append(f"{name}{_labels(lk)} {_num(value)}")
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, Any]:
        """The same figures as the text format, one entry per family."""
        out: dict[str, Any] = {}
        families = self._families()
        for name in sorted(families):
            entries = sorted(families[name], key=lambda e: e[0])
            kind = self._kind(name, entries)
            samples: list[dict[str, Any]] = []
            for lk, value in entries:
                if isinstance(value, Histogram):
                    samples.append({
                        "labels": dict(lk), "count": value.count, "sum": value.sum,
                        "p50": value.quantile(0.5), "p99": value.quantile(0.99),
                        "buckets": dict(zip([*map(str, BUCKETS), "+Inf"], value.counts, strict=True)),
                    })
                else:
                    samples.append({"labels": dict(lk), "value": value})
            out[name] = {"type": kind, "help": HELP.get(name, name), "samples": samples}
        return out


class Metrics:
    """This process's increments since the last flush (thread-safe), and its gauges.

    The hot path only adds to dictionaries in memory; every second the increments are added to
    the stored totals (``flush_rows``), which several processes share. Exposition merges the
    stored totals with what is not stored yet (:meth:`snapshot`): the increments since the last
    flush, and those of a flush whose write has not run yet. A counter never seems to go down
    (Prometheus would take that for a restart) nor to count twice, provided the stored totals
    and :meth:`snapshot` are read on the writer's thread, between two commits
    (sidecar.http.routes.metrics), and the flush's write calls :meth:`stored`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, LabelKey], float] = {}
        self._histograms: dict[tuple[str, LabelKey], Histogram] = {}
        self._in_flight: list[list[MetricRow]] = []
        """Rows taken by ``flush_rows`` whose write has not run yet."""
        self.gauges: dict[tuple[str, LabelKey], float] = {}

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        key = (name, _key(labels))
        with self._lock:
            self._counters[key] = self._counters.get(key, 0.0) + value

    def set_gauge(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self.gauges[(name, _key(labels))] = value

    def clear_gauges(self, name: str) -> None:
        with self._lock:
            for key in [k for k in self.gauges if k[0] == name]:
                del self.gauges[key]

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        key = (name, _key(labels))
        with self._lock:
            hist = self._histograms.get(key)
            if hist is None:
                hist = self._histograms[key] = Histogram()
            hist.observe(seconds)

    def pending(self, name: str, **labels: str) -> float:
        """An unflushed counter increment (tests)."""
        return self._counters.get((name, _key(labels)), 0.0)

    # -- persistence ------------------------------------------------------------------
    def flush_rows(self) -> list[MetricRow]:
        """Takes the increments since the last call. The write that stores them calls
        :meth:`stored`; if it fails, :meth:`restore` gives them back."""
        with self._lock:
            counters, self._counters = self._counters, {}
            histograms, self._histograms = self._histograms, {}
            rows: list[MetricRow] = []
            for (name, lk), value in counters.items():
                rows.append((name, _labels_json(lk), "counter", "", value))
            for (name, lk), hist in histograms.items():
                labels = _labels_json(lk)
                rows.extend((name, labels, "histogram", part, value) for part, value in hist.parts())
            self._in_flight.append(rows)
        return rows

    def stored(self, rows: list[MetricRow]) -> None:
        """``rows`` (from :meth:`flush_rows`) are in the stored totals now: call it inside the
        write that adds them, on the writer's thread."""
        with self._lock:
            self._in_flight = [batch for batch in self._in_flight if batch is not rows]

    def restore(self, rows: list[MetricRow]) -> None:
        """Puts increments back (a flush failed): they go out with the next one."""
        with self._lock:
            self._in_flight = [batch for batch in self._in_flight if batch is not rows]
            for name, labels, kind, part, value in rows:
                key = (name, _key(json.loads(labels)))
                if kind == "histogram":
                    hist = self._histograms.get(key)
                    if hist is None:
                        hist = self._histograms[key] = Histogram()
                    hist.add_part(part, value)
                else:
                    self._counters[key] = self._counters.get(key, 0.0) + value

    def snapshot(self, stored: Iterable[MetricRow]) -> Snapshot:
        """The stored totals plus this process's pending increments and gauges."""
        snap = Snapshot()
        for name, labels, kind, part, value in stored:
            snap.add_row(name, _key(json.loads(labels)), kind, part, value)
        with self._lock:
            for key, value in self._counters.items():
                snap.counters[key] = snap.counters.get(key, 0.0) + value
            for key, hist in self._histograms.items():
                for part, value in hist.parts():
                    snap.add_row(key[0], key[1], "histogram", part, value)
            for batch in self._in_flight:
                for name, labels, kind, part, value in batch:
                    snap.add_row(name, _key(json.loads(labels)), kind, part, value)
            snap.gauges.update(self.gauges)
        return snap


def _labels_json(lk: LabelKey) -> str:
    return json.dumps(dict(lk), sort_keys=True)


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels(lk: LabelKey) -> str:
    if not lk:
        return ""
    inner = ",".join(f'{k}="{_escape_label(v)}"' for k, v in lk)
    return "{" + inner + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    number = float(value)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    return str(int(number)) if number.is_integer() else repr(number)
