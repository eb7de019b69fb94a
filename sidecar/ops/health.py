"""Provides HealthMonitor: background peer probes and the ``/health`` snapshot.

Peers (Chatwoot, MCP-Crew, the decision engine and every crew back-end) are probed by one
background task every ``health.probe_interval_seconds``; ``GET /health`` serves the cached
results, so polling it never makes an outbound call. The database check is local and real
(a write and a read back) and runs per request, as does the queue check.

Status rules:

- ``down`` (HTTP 503): the database check fails. Nothing can be accepted (intake answers 503).
- ``degraded``: intake works but something needs attention: Chatwoot, MCP-Crew, an enabled
  decision engine or a crew back-end is unreachable or its circuit breaker is open; the oldest
  open job is older than ``QUEUE_STALE_SECONDS``, or the oldest acknowledged but unapplied
  delivery older than ``JOURNAL_STALE_SECONDS``, or the applier's latest batch failed while
  deliveries wait (its error is the queue check's ``detail``); a background loop failed
  within the last minute (sidecar.ops.supervise: it is restarted and listed in ``warnings``); or
  a hand edit of config.yaml was refused (the sidecar runs the last good config, which is
  not what the file says).
- ``ok`` otherwise. ``warnings`` lists things an operator should know that do not by
  themselves degrade service (``allow_unsigned`` on, a change that needs a restart).

``checks.storage`` says how big the state is (file, WAL, free space inside it), the oldest row kept
(overall and per kind) and the latest retention pass; it never degrades the status. A file made
before it could give space back adds a warning naming ``python -m sidecar compact``.

Dead letters do not degrade the status: they stay until an operator retries or discards
them, and a status stuck at ``degraded`` would hide the next real outage. Their count is in
the queue check and in the ``connector_dead_letters`` gauge.

Each cycle also writes the snapshot to the kv table as ``health.snapshot`` for the console.
Several processes or replicas share one state: one of them at a time (the holder of the
``health.probes`` lease) probes the peers and writes the snapshot; the others take the peers'
results from that snapshot. The database and queue checks stay per process and per request.

Crew calls in flight: every process of the sidecar writes its per-back-end counts into the
``processes`` table every couple of seconds; ``/health`` and the console show their sum, next to
each back-end's limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from sidecar.config import Config
from sidecar.crew.base import ProbeResult
from sidecar.crew.breaker import BreakerBoard
from sidecar.crew.registry import CrewRegistry
from sidecar.ops.logs import get_logger, log_event
from sidecar.ops.retention import COMPACT_HINT, read_storage, storage_check
from sidecar.outbound.chatwoot import ChatwootClient
from state import StateError, StateService, Tx
from state.storage import GIVES_BACK
from state.vocabulary import HEALTH_SNAPSHOT, JOURNAL_STALE_SECONDS, QUEUE_STALE_SECONDS

log = get_logger()

SNAPSHOT_KEY = HEALTH_SNAPSHOT
__all__ = ["JOURNAL_STALE_SECONDS", "QUEUE_STALE_SECONDS", "SNAPSHOT_KEY", "HealthMonitor", "crew_calls",
           "queue_status", "with_ages"]
_PROBE_TIMEOUT_SECONDS = 5.0
HEALTH_LEASE = "health.probes"
"""The singleton lease of the peer probes and the snapshot (state.stores.processes)."""


@dataclass(frozen=True, slots=True)
class PeerResult:
    status: str
    """``ok``, ``down``, ``disabled`` or ``unknown`` (not probed yet)."""
    detail: str
    latency_ms: float | None
    checked_at: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "detail": self.detail, "latency_ms": self.latency_ms,
                "checked_at": self.checked_at}


_UNKNOWN = PeerResult("unknown", "not probed yet", None, None)


def _peer_from(check: Any) -> PeerResult | None:
    """A peer's result as the snapshot document stores it."""
    if not isinstance(check, dict) or not isinstance(check.get("status"), str):
        return None
    return PeerResult(check["status"], str(check.get("detail") or ""), check.get("latency_ms"), check.get("checked_at"))


def _from_probe(result: ProbeResult, at: float) -> PeerResult:
    latency = round(result.latency * 1000, 2) if result.latency is not None else None
    return PeerResult("ok" if result.ok else "down", result.detail, latency, at)


async def _timed(probe: Callable[[], Awaitable[ProbeResult]]) -> ProbeResult:
    """Runs one probe with a hard timeout; a probe's bug is a down peer, not a dead monitor."""
    started = time.monotonic()
    try:
        result = await asyncio.wait_for(probe(), _PROBE_TIMEOUT_SECONDS + 1)
    except TimeoutError:
        return ProbeResult(False, "probe timed out", time.monotonic() - started)
    except Exception as exc:  # noqa: BLE001 - any failure of a probe means "down"
        return ProbeResult(False, f"probe failed ({type(exc).__name__})", time.monotonic() - started)
    if result.latency is None:
        result = ProbeResult(result.ok, result.detail, time.monotonic() - started)
    return result


class HealthMonitor:
    """Probes peers in the background and assembles the health snapshot."""

    def __init__(self, *, config: Callable[[], Config], state: StateService, chatwoot: ChatwootClient,
                 crews: CrewRegistry, breakers: BreakerBoard, session: aiohttp.ClientSession,
                 warnings: Callable[[], list[str]], config_problem: Callable[[], str | None],
                 crashing: Callable[[], bool], journal_problem: Callable[[], str | None],
                 process_id: str = "") -> None:
        self._config = config
        self._state = state
        self._chatwoot = chatwoot
        self._crews = crews
        self._breakers = breakers
        self._session = session
        self._journal_problem = journal_problem
        self._warnings = warnings
        self._config_problem = config_problem
        self._crashing = crashing
        self.peers: dict[str, PeerResult] = {
            "chatwoot": _UNKNOWN, "mcp_crew": _UNKNOWN, "decision_engine": _UNKNOWN}
        self.backends: dict[str, tuple[str, PeerResult, str]] = {}
        """Back-end name -> (kind, last probe, breaker key)."""
        self._wake = asyncio.Event()
        self.probed = asyncio.Event()
        self._process_id = process_id or f"health-{id(self)}"

    # -- probing ------------------------------------------------------------------------
    def probe_soon(self) -> None:
        """Re-probes now (the config changed: URLs and tokens may be different)."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                if await self._lead():
                    await self.probe_all()
                    await self.write_snapshot()
                else:
                    await self.adopt_snapshot()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the monitor must outlive any one failure
                log.exception("health probe cycle failed")
            interval = self._config().health.probe_interval_seconds
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
            # that lands as its timeout fires, and the loop would then outlive the shutdown.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            self._wake.clear()

    # -- once per state: several processes and replicas share one snapshot ---------------------
    async def _lead(self) -> bool:
        """Whether this process probes the peers and writes the snapshot this cycle: one process
        per state does (a lease renewed every cycle; another takes over within three intervals
        of its holder's death). If the state cannot be written, probe anyway: /health must tell."""
        ttl = max(3 * self._config().health.probe_interval_seconds, 2.0)
        try:
            return await self._state.write(lambda tx: tx.processes.hold(HEALTH_LEASE, self._process_id,
                                                                        time.time(), ttl))
        except StateError:
            return True

    async def adopt_snapshot(self) -> None:
        """Takes the peers' results from the snapshot the leading process wrote (no probe of our
        own: Chatwoot and the crews are asked once per cycle, not once per process)."""
        doc = await self._state.read(lambda tx: tx.documents.get(SNAPSHOT_KEY))
        checks = doc.get("checks") if isinstance(doc, dict) else None
        if not isinstance(checks, dict):
            return
        self.peers = {name: _peer_from(checks.get(name)) or peer for name, peer in self.peers.items()}
        self._crews.refresh(self._config())
        stored = checks.get("backends") if isinstance(checks.get("backends"), dict) else {}
        self.backends = {name: (backend.kind, _peer_from(stored.get(name)) or _UNKNOWN, backend.breaker_key)
                         for name, backend in self._crews.all_backends().items()}
        self.probed.set()

    async def probe_all(self) -> None:
        config = self._config()
        self._crews.refresh(config)
        backends = self._crews.all_backends()
        default = backends["default"]
        named = {name: b for name, b in backends.items() if name != "default"}
        results = await asyncio.gather(
            self._probe_chatwoot(),
            _timed(default.probe),
            self._probe_decision_engine(config),
            *(_timed(b.probe) for b in named.values()),
        )
        at = time.time()
        chatwoot, mcp_crew, engine, *others = results
        before = {name: peer.status for name, peer in self.peers.items()}
        self.peers = {
            "chatwoot": _from_probe(chatwoot, at),
            "mcp_crew": _from_probe(mcp_crew, at),
            "decision_engine": (PeerResult("disabled", "not configured: the routing rules decide", None, at)
                                if engine is None else _from_probe(engine, at)),
        }
        self.backends = {"default": (default.kind, self.peers["mcp_crew"], default.breaker_key)}
        for (name, backend), result in zip(named.items(), others, strict=True):
            self.backends[name] = (backend.kind, _from_probe(result, at), backend.breaker_key)
        for name, peer in self.peers.items():
            if before.get(name) not in (peer.status, "unknown"):
                log_event(log, "health.peer_changed", level=30 if peer.status == "down" else 20,
                          peer=name, status=peer.status, detail=peer.detail)
        self.probed.set()

    async def _probe_chatwoot(self) -> ProbeResult:
        started = time.monotonic()

        async def probe() -> ProbeResult:
            ok, detail = await self._chatwoot.probe()
            return ProbeResult(ok, detail, time.monotonic() - started)

        return await _timed(probe)

    async def _probe_decision_engine(self, config: Config) -> ProbeResult | None:
        url = config.mcp_crew.decision_engine_url
        if not url:
            return None

        async def probe() -> ProbeResult:
            started = time.monotonic()
            try:
                # Reachability only (any answer below 500); never follow a redirect.
                async with self._session.get(
                    url, timeout=aiohttp.ClientTimeout(total=_PROBE_TIMEOUT_SECONDS), allow_redirects=False
                ) as resp:
                    return ProbeResult(resp.status < 500, f"HTTP {resp.status}", time.monotonic() - started)
            except (aiohttp.ClientError, TimeoutError) as exc:
                return ProbeResult(False, f"unreachable ({type(exc).__name__})", time.monotonic() - started)

        return await _timed(probe)

    # -- snapshot -----------------------------------------------------------------------
    async def _database(self) -> dict[str, Any]:
        at = time.time()
        try:
            latency = await self._state.call(lambda db: db.probe_write())
        except StateError as exc:
            return {"status": "down", "detail": f"write/read failed: {exc}"[:300], "latency_ms": None,
                    "checked_at": at}
        return {"status": "ok", "detail": "write and read back", "latency_ms": round(latency * 1000, 2),
                "checked_at": at}

    async def _storage(self) -> dict[str, Any]:
        now = time.time()
        try:
            figures, oldest, last = await read_storage(self._state)
        except StateError as exc:
            return {"status": "unknown", "detail": f"cannot read the storage figures: {exc}"[:300], "checked_at": now}
        return storage_check(figures, oldest, last, now)

    async def _queue(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        def read(tx: Tx) -> tuple[Any, Any, list[dict[str, Any]]]:
            now = time.time()
            return tx.jobs.stats(now), tx.journal.backlog(now), tx.processes.live(now)

        try:
            stats, backlog, processes = await self._state.read(read)
        except StateError as exc:
            return {"status": "unknown", "depth": None, "oldest_pending_age": None, "dead_letters": None,
                    "unapplied": None, "oldest_unapplied_age": None,
                    "detail": f"cannot read the queue: {exc}"[:300]}, []
        age = round(stats.oldest_pending_age, 3) if stats.oldest_pending_age is not None else None
        unapplied_age = round(backlog.oldest_age, 3) if backlog.oldest_age is not None else None
        check: dict[str, Any] = {
            "status": queue_status(age, unapplied_age), "depth": stats.depth, "oldest_pending_age": age,
            "dead_letters": stats.dead, "unapplied": backlog.unapplied, "oldest_unapplied_age": unapplied_age}
        # The applier may live in another process (multi-process mode): its rows say why it fails.
        problem = self._journal_problem() or next(
            (p["info"]["journal_problem"] for p in processes if (p.get("info") or {}).get("journal_problem")), None)
        if problem and backlog.unapplied:
            check["status"] = "degraded"
            check["detail"] = f"acknowledged webhooks cannot be applied: {problem}"[:300]
        return check, processes

    def _backend_checks(self, processes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        calls = crew_calls(processes)
        config = self._config()
        out: dict[str, dict[str, Any]] = {}
        for name, (kind, result, breaker_key) in self.backends.items():
            breaker = self._breakers.get(breaker_key).snapshot()
            status = result.status
            if status == "ok" and breaker.get("state") == "open":
                status = "degraded"  # reachable, but recent requests failed: calls are held back
            crew = config.crew(name)
            limit = crew.max_in_flight if crew is not None else config.mcp_crew.max_in_flight
            figures = calls.get(name, {})
            out[name] = {"status": status, "kind": kind, "detail": result.detail,
                         "latency_ms": result.latency_ms, "checked_at": result.checked_at, "breaker": breaker,
                         "in_flight": figures.get("in_flight", 0), "waiting": figures.get("waiting", 0),
                         "limit": limit}
        return out

    async def snapshot(self) -> dict[str, Any]:
        """The health document (the kv ``health.snapshot`` shape)."""
        database = await self._database()
        queue, processes = await self._queue()
        storage = await self._storage()
        checks: dict[str, Any] = {"database": database,
                                  **{name: peer.to_dict() for name, peer in self.peers.items()},
                                  "queue": queue, "backends": self._backend_checks(processes), "storage": storage}
        warnings = list(self._warnings())
        if storage.get("auto_vacuum") not in (None, *GIVES_BACK):
            warnings.append(COMPACT_HINT.format(mib=storage["file_bytes"] // 2**20))
        # Other processes' background-loop crashes (multi-process mode) show here too.
        others_crashing = False
        for process in processes:
            info = process.get("info") or {}
            warnings += [w for w in info.get("warnings") or () if w not in warnings]
            others_crashing = others_crashing or bool(info.get("crashing"))
        problem = self._config_problem()
        if database["status"] == "down":
            status = "down"
        elif (problem or queue["status"] == "degraded" or self._crashing() or others_crashing
              or any(p.status == "down" for p in self.peers.values())
              or any(b["status"] in ("down", "degraded") for b in checks["backends"].values())):
            status = "degraded"
        else:
            status = "ok"
        return {"status": status, "at": time.time(), "warnings": warnings, "checks": checks}

    async def write_snapshot(self) -> dict[str, Any]:
        doc = await self.snapshot()
        with contextlib.suppress(StateError):
            await self._state.write(lambda tx: tx.documents.put(SNAPSHOT_KEY, doc, time.time()))
        return doc


def crew_calls(processes: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Crew calls in flight and waiting for a slot, per back-end, summed over live processes."""
    out: dict[str, dict[str, int]] = {}
    for process in processes:
        for name, figures in (process.get("info") or {}).get("crew_calls", {}).items():
            total = out.setdefault(name, {"in_flight": 0, "waiting": 0})
            total["in_flight"] += int(figures.get("in_flight", 0))
            total["waiting"] += int(figures.get("waiting", 0))
    return out


def queue_status(oldest_pending_age: float | None, oldest_unapplied_age: float | None) -> str:
    """``degraded`` when work is stuck: an open job or an unapplied delivery is too old."""
    if oldest_pending_age is not None and oldest_pending_age > QUEUE_STALE_SECONDS:
        return "degraded"
    if oldest_unapplied_age is not None and oldest_unapplied_age > JOURNAL_STALE_SECONDS:
        return "degraded"
    return "ok"


def with_ages(doc: dict[str, Any], now: float) -> dict[str, Any]:
    """The snapshot plus ``age_seconds`` on every check that has a ``checked_at`` (HTTP only)."""
    def aged(check: dict[str, Any]) -> dict[str, Any]:
        at = check.get("checked_at")
        return {**check, "age_seconds": round(now - at, 3) if isinstance(at, int | float) else None}

    checks = {name: aged(c) if name != "backends" else {n: aged(b) for n, b in c.items()}
              for name, c in doc["checks"].items()}
    if "storage" in checks and isinstance(checks["storage"].get("oldest_row_at"), int | float):
        checks["storage"]["oldest_row_age_seconds"] = round(now - checks["storage"]["oldest_row_at"], 3)
    checks["queue"] = doc["checks"]["queue"]
    return {**doc, "checks": checks}
