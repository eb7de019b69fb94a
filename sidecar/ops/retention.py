"""Provides RetentionLoop: the background pass that prunes old rows and gives the space back.

Runs in the queue-worker process (role ``all`` or ``worker``), one pass every
``retention.interval_seconds``. Only one process prunes a state at a time: a pass starts by taking
the ``retention`` lease (``processes.hold``), so several worker processes or a restart never prune
twice at once.

A pass visits each kind of row (``state.retention.KINDS``) with its own age limit and deletes in
batches of at most ``retention.batch_rows`` rows, sized so each takes about ``BATCH_SECONDS``, each
batch one short write through the same writer as everything else: a webhook waits at most one
batch. Between batches the pass steps back like the other background work
(``Pacing.yield_to_intake``) and pauses twice as long as the batch took, so it never uses more
than about a third of the writer. Then it gives the freed pages back to the disk the same way (SQLite's incremental vacuum, ``VACUUM_STEP_PAGES`` at a time), and records what it did
(``retention.status`` in the kv table, counters ``connector_retention_pruned_total{kind}``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from connector_config import Config
from sidecar.ops.logs import get_logger, log_event
from sidecar.ops.metrics import Metrics
from sidecar.ops.yielding import YieldsToIntake
from state import StateError, StateService, StorageFigures, StorageUnavailable, Tx
from state.retention import KINDS, OldestRows, cutoffs, oldest_rows, prune_batch
from state.vocabulary import RETENTION_STATUS

log = get_logger()
LEASE = "retention"
FIRST_BATCH_ROWS = 25
"""Rows in a kind's first batch; the next ones grow (up to ``retention.batch_rows``) while a batch
takes under half of BATCH_SECONDS, and shrink while it takes more."""
BATCH_SECONDS = 0.005
"""What one batch may take (the writer's pause a webhook may meet)."""
VACUUM_STEP_PAGES = 64
"""Pages given back per write transaction (256 KiB with 4 KiB pages: a few milliseconds)."""
PRUNED_TOTAL = "connector_retention_pruned_total"


class RetentionLoop:
    """Prunes what the config says may go, in small paced batches, then gives the space back."""

    def __init__(self, *, config: Callable[[], Config], state: StateService, metrics: Metrics, pacing: YieldsToIntake,
                 owner: str, clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._state = state
        self._metrics = metrics
        self._pacing = pacing
        self._owner = owner
        self._clock = clock
        self._wake = asyncio.Event()
        self.passes = 0
        """Passes this process completed (tests wait on it)."""

    def wake(self) -> None:
        """Runs a pass now (a config change, a test)."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await self.pass_once()
            except StorageUnavailable as exc:
                log_event(log, "retention.failed", level=30, error=str(exc))
            interval = self._config().retention.interval_seconds
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            self._wake.clear()

    async def release(self) -> None:
        """Hands the lease on at shutdown, so another process may prune at once."""
        with contextlib.suppress(StateError):
            await self._state.write(lambda tx: tx.processes.release(LEASE, self._owner))

    async def pass_once(self) -> dict[str, Any] | None:
        """One pass; its report, or None when another process holds the lease."""
        settings = self._config().retention
        now = self._clock()
        ttl = max(3 * settings.interval_seconds, 120.0)
        if not await self._hold(ttl):
            return None
        started = time.monotonic()
        renewed = started
        pruned: dict[str, int] = {}
        batches = 0
        limits = cutoffs({kind: settings.days(kind) for kind in KINDS}, now)
        slowest = 0.0
        for kind, before in limits.items():
            size = min(FIRST_BATCH_ROWS, settings.batch_rows)
            while True:
                if time.monotonic() - renewed > ttl / 3:
                    # A long pass (a first one over months of rows) keeps its lease, or stops if it
                    # lost it: never two passes at once.
                    if not await self._hold(ttl):
                        return None
                    renewed = time.monotonic()
                deleted, took = await self._paced(functools.partial(self._state.write, prune_batch, kind, before, size))
                slowest = max(slowest, took)
                batches += 1
                if deleted:
                    pruned[kind] = pruned.get(kind, 0) + deleted
                    self._metrics.inc(PRUNED_TOTAL, float(deleted), kind=kind)
                if deleted < size:
                    break
                # Rows cost differently (a webhook body is kilobytes, an outcome a few bytes): the
                # batch follows what one takes, so a waiting webhook seldom waits much longer than
                # BATCH_SECONDS.
                if took > BATCH_SECONDS:
                    size = max(1, size // 2)
                elif took < BATCH_SECONDS / 2:
                    size = min(settings.batch_rows, size * 2)
        await self._state.write(lambda tx: tx.processes.forget_stale(now))
        given_back = 0
        while True:
            freed, _took = await self._paced(lambda: self._state.call(lambda db: db.give_back(VACUUM_STEP_PAGES)))
            given_back += freed
            if freed < VACUUM_STEP_PAGES:
                break
        report = {"at": now, "seconds": round(time.monotonic() - started, 3), "pruned": pruned, "batches": batches,
                  "slowest_batch_ms": round(slowest * 1000, 1), "pages_given_back": given_back,
                  "kept_forever": sorted(set(KINDS) - set(limits))}
        await self._state.write(lambda tx: tx.documents.put(RETENTION_STATUS, report, self._clock()))
        self.passes += 1
        if pruned or given_back:
            log_event(log, "retention.pass", seconds=report["seconds"], pages_given_back=given_back or None,
                      **{f"pruned_{kind}": n for kind, n in pruned.items()})
        return report

    async def _hold(self, ttl: float) -> bool:
        now = self._clock()
        return bool(await self._state.write(lambda tx: tx.processes.hold(LEASE, self._owner, now, ttl)))

    async def _paced(self, step: Callable[[], Awaitable[int]]) -> tuple[int, float]:
        """One step of the pass (its result and how long it took), then a breather twice as long:
        webhooks and the queue always get at least two thirds of the writer (the pacing also steps
        back while they wait)."""
        await self._pacing.yield_to_intake()
        started = time.monotonic()
        # Made here, not by the caller: a pass cancelled during the pause above (shutdown) leaves
        # no coroutine that was never awaited.
        result = await step()
        took = time.monotonic() - started
        await asyncio.sleep(2 * took)
        return result, took


async def read_storage(state: StateService) -> tuple[StorageFigures, OldestRows, dict[str, Any] | None]:
    """The file's figures, the oldest row kept of each kind and the latest pass's report (any
    process's), for /health and /metrics. Raises StateError."""
    def read(tx: Tx) -> tuple[OldestRows, Any]:
        return oldest_rows(tx), tx.documents.get(RETENTION_STATUS)

    figures = await state.call(lambda db: db.storage())
    oldest, last = await state.read(read)
    return figures, oldest, last if isinstance(last, dict) else None


def storage_check(figures: StorageFigures, oldest: OldestRows, last: dict[str, Any] | None,
                  now: float) -> dict[str, Any]:
    """/health's ``checks.storage``: how big the state is, the oldest row kept, the last pass."""
    found = oldest.oldest
    check: dict[str, Any] = {
        "status": "ok", "detail": "", **figures.to_dict(),
        "oldest_row_at": found[1] if found else None, "oldest_row_kind": found[0] if found else None,
        "oldest_row_age_seconds": round(now - found[1], 3) if found else None,
        "oldest_by_kind": oldest.by_kind,
        "last_pass_at": last.get("at") if last else None, "last_pass": last, "checked_at": now}
    if figures.needs_compact:
        check["detail"] = COMPACT_HINT.format(mib=figures.file_bytes // 2**20)
    else:
        check["detail"] = f"{(figures.file_bytes + figures.wal_bytes) / 2**20:.1f} MiB"
    return check


COMPACT_HINT = ("the state file ({mib} MiB) was made before it could give space back: pruned rows are "
                "reused but the file does not shrink; stop the sidecar and run `python -m sidecar compact` once")
"""The warning for a file made before auto-vacuum (shown by /health and the console)."""
