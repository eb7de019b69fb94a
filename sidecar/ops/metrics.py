"""Provides the sidecar's metrics: counters and latency histograms, persisted in SQLite.

Figures live in memory on the hot path and are flushed to the ``metrics`` table every
second (and at shutdown), so they survive restarts and the console can read them.
"""

from __future__ import annotations

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
}
"""Exposed families and their type; each one is always listed, even before its first sample."""

LabelKey = tuple[tuple[str, str], ...]


def _key(labels: dict[str, str]) -> LabelKey:
    return tuple(sorted((k, str(v)) for k, v in labels.items()))


class Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(BUCKETS):
            if value <= bound:
                self.counts[i] += 1
                break
        else:
            self.counts[-1] += 1
        self.sum += value
        self.count += 1

    def to_json(self) -> dict[str, Any]:
        return {"counts": self.counts, "sum": self.sum, "count": self.count}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Histogram:
        h = cls()
        counts = doc.get("counts") or []
        if len(counts) == len(h.counts):
            h.counts = [int(c) for c in counts]
        h.sum = float(doc.get("sum", 0.0))
        h.count = int(doc.get("count", 0))
        return h

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


class Metrics:
    """Thread-safe counters, gauges and histograms keyed by (name, labels)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: dict[tuple[str, LabelKey], float] = {}
        self.gauges: dict[tuple[str, LabelKey], float] = {}
        self.histograms: dict[tuple[str, LabelKey], Histogram] = {}
        self._dirty: set[tuple[str, LabelKey]] = set()

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        key = (name, _key(labels))
        with self._lock:
            self.counters[key] = self.counters.get(key, 0.0) + value
            self._dirty.add(key)

    def set_gauge(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self.gauges[(name, _key(labels))] = value

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        key = (name, _key(labels))
        with self._lock:
            hist = self.histograms.get(key)
            if hist is None:
                hist = self.histograms[key] = Histogram()
            hist.observe(seconds)
            self._dirty.add(key)

    def counter(self, name: str, **labels: str) -> float:
        return self.counters.get((name, _key(labels)), 0.0)

    def counter_total(self, name: str, **match: str) -> float:
        want = set(_key(match))
        return sum(v for (n, lk), v in self.counters.items() if n == name and want <= set(lk))

    # -- persistence ------------------------------------------------------------------
    def dirty_rows(self) -> list[tuple[str, str, str, Any]]:
        """Rows changed since the last call, for Store.save_metrics."""
        with self._lock:
            rows = []
            for key in self._dirty:
                name, lk = key
                labels = json.dumps(dict(lk), sort_keys=True)
                if key in self.counters:
                    rows.append((name, labels, "counter", self.counters[key]))
                elif key in self.histograms:
                    rows.append((name, labels, "histogram", self.histograms[key].to_json()))
            self._dirty.clear()
            return rows

    def load(self, rows: Iterable[tuple[str, str, str, Any]]) -> None:
        with self._lock:
            for name, labels, kind, value in rows:
                key = (name, _key(json.loads(labels)))
                if kind == "counter":
                    self.counters[key] = float(value)
                elif kind == "histogram":
                    self.histograms[key] = Histogram.from_json(value)

    # -- exposition -------------------------------------------------------------------
    def _families(self) -> dict[str, list[tuple[LabelKey, Any]]]:
        """Samples by exposed family name; every documented family is present, even empty."""
        families: dict[str, list[tuple[LabelKey, Any]]] = {name: [] for name in TYPES}
        with self._lock:
            items: list[tuple[str, LabelKey, Any]] = [(n, lk, v) for (n, lk), v in self.counters.items()]
            items += [(n, lk, v) for (n, lk), v in self.gauges.items()]
            items += [(n, lk, _copy_histogram(h)) for (n, lk), h in self.histograms.items()]
        for name, lk, value in items:
            families.setdefault(name, []).append((lk, value))
        return families

    def _kind(self, name: str, entries: list[tuple[LabelKey, Any]]) -> str:
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


def _copy_histogram(h: Histogram) -> Histogram:
    copy = Histogram()
    copy.counts, copy.sum, copy.count = list(h.counts), h.sum, h.count
    return copy


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
