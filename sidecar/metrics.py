"""Provides the sidecar's metrics: counters and latency histograms, persisted in SQLite.

Figures live in memory on the hot path and are flushed to the ``metrics`` table every
second (and at shutdown), so they survive restarts and the console can read them.
"""

from __future__ import annotations

import json
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
    "connector_routing_duration_seconds": "Routing decision latency",
    "connector_queue_depth": "Jobs waiting or in progress",
    "connector_dead_letters": "Jobs that gave up",
}

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
    def render_prometheus(self) -> str:
        lines: list[str] = []
        with self._lock:
            by_name: dict[str, list[tuple[str, LabelKey, Any]]] = {}
            for (name, lk), v in self.counters.items():
                by_name.setdefault(name, []).append(("counter", lk, v))
            for (name, lk), v in self.gauges.items():
                by_name.setdefault(name, []).append(("gauge", lk, v))
            for (name, lk), h in self.histograms.items():
                by_name.setdefault(name, []).append(("histogram", lk, h))
        for name in sorted(by_name):
            entries = by_name[name]
            kind = entries[0][0]
            lines.append(f"# HELP {name} {HELP.get(name, name)}")
            lines.append(f"# TYPE {name} {kind}")
            for _, lk, value in sorted(entries, key=lambda e: e[1]):
                if kind == "histogram":
                    cumulative = 0
                    for bound, count in zip((*BUCKETS, float("inf")), value.counts, strict=True):
                        cumulative += count
                        le = "+Inf" if bound == float("inf") else repr(bound)
                        lines.append(f"{name}_bucket{_labels(lk + (('le', le),))} {cumulative}")
                    lines.append(f"{name}_sum{_labels(lk)} {value.sum}")
                    lines.append(f"{name}_count{_labels(lk)} {value.count}")
                else:
                    lines.append(f"{name}{_labels(lk)} {_num(value)}")
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, list[dict[str, Any]]] = {}
        with self._lock:
            for (name, lk), v in sorted(self.counters.items()):
                out.setdefault(name, []).append({"labels": dict(lk), "value": v})
            for (name, lk), v in sorted(self.gauges.items()):
                out.setdefault(name, []).append({"labels": dict(lk), "value": v})
            for (name, lk), h in sorted(self.histograms.items(), key=lambda kv: kv[0]):
                out.setdefault(name, []).append({
                    "labels": dict(lk), "count": h.count, "sum": h.sum,
                    "p50": h.quantile(0.5), "p99": h.quantile(0.99),
                    "buckets": dict(zip([*map(str, BUCKETS), "+Inf"], h.counts, strict=True)),
                })
        return out


def _labels(lk: LabelKey) -> str:
    if not lk:
        return ""
    inner = ",".join(f'{k}="{_escape_label(v)}"' for k, v in lk)
    return "{" + inner + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)
