"""Provides pure functions that read the sidecar's health snapshot and metric rows.

The sidecar writes these documents; another version of it may write fewer or different
fields, so every access here is defensive and never raises on a surprising shape.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from console.snapshots import Component

DEFAULT_PROBE_INTERVAL = 15.0
"""The sidecar's default ``health.probe_interval_seconds``."""
_PEERS = ("database", "chatwoot", "mcp_crew", "decision_engine")


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def probe_interval(effective: Any) -> float:
    """The probe interval from the masked effective config, else the default."""
    value = _num(_map(_map(effective).get("health")).get("probe_interval_seconds"))
    return value if value and value > 0 else DEFAULT_PROBE_INTERVAL


def sidecar_status(doc: Any, updated_at: float | None, now: float, stale_after: float) -> str:
    """``ok``/``degraded``/``down`` from a fresh snapshot, ``stale`` or ``unknown`` otherwise."""
    if updated_at is None or not isinstance(doc, Mapping):
        return "unknown"
    if now - updated_at > stale_after:
        return "stale"
    status = doc.get("status")
    return status if isinstance(status, str) and status else "unknown"


def components(doc: Any) -> tuple[Component, ...]:
    """One entry per peer check, the queue check, and each crew back-end."""
    checks = _map(_map(doc).get("checks"))
    out: list[Component] = []
    for name in _PEERS:
        check = _map(checks.get(name))
        if not check:
            continue
        out.append(Component(
            name=name,
            status=str(check.get("status", "unknown")),
            detail=str(check.get("detail", "") or ""),
            latency_ms=_num(check.get("latency_ms")),
            checked_at=_num(check.get("checked_at")),
        ))
    queue = _map(checks.get("queue"))
    if queue:
        out.append(Component(name="queue", status=str(queue.get("status", "unknown")),
                             detail=str(queue.get("detail", "") or "")))
    for crew, raw in sorted(_map(checks.get("backends")).items()):
        backend = _map(raw)
        breaker = _map(backend.get("breaker"))
        requests = breaker.get("recent_requests")
        failures = breaker.get("recent_failures")
        kind = str(backend.get("kind", "") or "")
        in_flight, limit, waiting = backend.get("in_flight"), backend.get("limit"), backend.get("waiting")
        calls = ""
        if isinstance(in_flight, int) and isinstance(limit, int):
            calls = f"{in_flight}/{limit}" + (f" +{waiting}" if isinstance(waiting, int) and waiting else "")
        out.append(Component(
            name=f"{crew} ({kind})" if kind else str(crew),
            status=str(backend.get("status", "unknown")),
            detail=str(backend.get("detail", "") or ""),
            latency_ms=_num(backend.get("latency_ms")),
            checked_at=_num(backend.get("checked_at")),
            breaker=str(breaker.get("state", "") or ""),
            recent=f"{failures}/{requests}" if isinstance(requests, int) and isinstance(failures, int) else "",
            calls=calls,
        ))
    return tuple(out)


def warnings(doc: Any) -> tuple[str, ...]:
    raw = _map(doc).get("warnings")
    return tuple(str(w) for w in raw) if isinstance(raw, list) else ()


def counter_sum(rows: Iterable[tuple[str, str, str, str, Any]], name: str, **match: str) -> int:
    """Adds up a counter's values over every label set that has the given labels (rows as the
    state stores them: name, labels JSON, kind, part, value)."""
    total = 0.0
    for row_name, labels_json, kind, _part, value in rows:
        if row_name != name or kind != "counter" or not isinstance(value, int | float):
            continue
        try:
            labels = json.loads(labels_json)
        except ValueError:
            continue
        if all(_map(labels).get(k) == v for k, v in match.items()):
            total += value
    return int(total)


def per_minute(buckets: Iterable[tuple[int, float]], start: float, minutes: int = 60) -> tuple[float, ...]:
    """Spreads (minute epoch, value) buckets over the last ``minutes`` minutes, zero-filled."""
    first = int(start // 60) * 60
    values = dict(buckets)
    return tuple(float(values.get(first + 60 * i, 0.0) or 0.0) for i in range(1, minutes + 1))
