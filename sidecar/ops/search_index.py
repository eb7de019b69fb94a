"""Provides SearchIndexer: keeps the console filter's index up to date, in the background.

The triggers note which conversations changed (``search_dirty``); this loop indexes them in
batches of ``BATCH`` a second or so later and merges the index's segments in small steps, never in
a webhook's transaction (see ``state.sqlite.search``). The filter is exact meanwhile: it also looks
at every conversation noted and not indexed yet. One process at a time does it (the
``search-index`` lease). After an erasure it also merges the whole index into one segment, with
zeroing on, so no piece of the erased text stays in an old segment (the ``search.purge`` document),
then has the back-end clear its other old copies (``clear_wal``: SQLite's WAL; on PostgreSQL, which
has no such index, a plain VACUUM of the erased tables).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sidecar.ops.logs import get_logger, log_event
from sidecar.ops.yielding import YieldsToIntake
from state import StateError, StateService, StorageUnavailable, Tx
from state.vocabulary import SEARCH_PURGE

log = get_logger()
LEASE = "search-index"
BATCH = 500
"""Conversations indexed per write transaction."""
MERGE_PAGES = 64
"""Pages a merge step may write (a few milliseconds)."""
PURGE_PAGES = 256
"""Pages per step of the full merge after an erasure."""
INTERVAL_SECONDS = 1.0
"""How often it looks for changed conversations."""
_LEASE_SECONDS = 30.0


class SearchIndexer:
    def __init__(self, *, state: StateService, pacing: YieldsToIntake, owner: str,
                 clock: Callable[[], float] = time.time) -> None:
        self._state = state
        self._pacing = pacing
        self._owner = owner
        self._clock = clock
        self._wake = asyncio.Event()
        self.cycles = 0

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await self.cycle()
            except StorageUnavailable as exc:
                log_event(log, "search_index.failed", level=30, error=str(exc))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(INTERVAL_SECONDS):
                    await self._wake.wait()
            self._wake.clear()

    async def release(self) -> None:
        with contextlib.suppress(StateError):
            await self._state.write(lambda tx: tx.processes.release(LEASE, self._owner))

    async def cycle(self) -> int:
        """Indexes what changed and merges a little; returns how many conversations it indexed."""
        def look(tx: Tx) -> tuple[int, Any]:
            search = tx.search
            return (search.pending() if search is not None else 0), tx.documents.get(SEARCH_PURGE)

        pending, purge = await self._state.read(look)
        if not pending and not purge:
            self.cycles += 1
            return 0
        now = self._clock()
        if not await self._state.write(lambda tx: tx.processes.hold(LEASE, self._owner, now, _LEASE_SECONDS)):
            return 0
        indexed = 0
        while pending:
            done = await self._paced(lambda: self._state.write(_index_batch))
            indexed += done
            if done:
                await self._paced(lambda: self._state.write(lambda tx: tx.search.merge_step(MERGE_PAGES)))
            if done < BATCH:
                break
        if purge:
            await self._purge(purge)
        self.cycles += 1
        return indexed

    async def _purge(self, requested: Any) -> None:
        """Merges the whole index into one segment with zeroing on, then clears the request (unless
        a newer erasure asked again meanwhile)."""
        steps = 0
        while await self._paced(lambda: self._state.call(
                lambda db: db.erase(_purge_step, clear_wal=False)[0])):
            steps += 1

        await self._state.call(lambda db: db.clear_wal())

        def clear(tx: Tx) -> None:
            if tx.documents.get(SEARCH_PURGE) == requested:
                tx.documents.delete(SEARCH_PURGE)
        await self._state.write(clear)
        log_event(log, "search_index.purged", steps=steps)

    async def _paced(self, step: Callable[[], Awaitable[Any]]) -> Any:
        await self._pacing.yield_to_intake()
        started = time.monotonic()
        # Made here, not by the caller: a pass cancelled during the pause above (shutdown) leaves
        # no coroutine that was never awaited.
        result = await step()
        await asyncio.sleep(time.monotonic() - started)
        return result


def _purge_step(tx: Tx) -> bool:
    """One step of the full merge; False when done (PostgreSQL has no index to merge)."""
    return tx.search.merge_step(-PURGE_PAGES) if tx.search is not None else False


def _index_batch(tx: Tx) -> int:
    return tx.search.index_pending(BATCH) if tx.search is not None else 0
