"""Provides StateWriter: every database call of the sidecar runs on one dedicated thread.

SQLite allows one writer at a time and its commits (fsync, checkpoints) block; running
them on a single thread keeps the event loop free and gives us one writer by design.

Group commit: ``transact`` calls that arrive while the thread is busy (typically while it
waits for an fsync) are queued and then run together in one transaction, each in its own
savepoint, with a single COMMIT (``Store.transaction_group``). With synchronous=FULL a commit
costs an fsync (0.2-10 ms depending on the disk), so one fsync per webhook capped intake at
the disk's fsync rate; grouping lets concurrent webhooks share it. Durability is unchanged:
every caller is answered only after the COMMIT that contains its own work has returned.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from state import Store, Tx

T = TypeVar("T")
_MAX_GROUP = 128
"""Most transactions committed together (bounds the latency one commit can add)."""


def _answer(answers: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in answers:
        if future.cancelled():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class StateWriter:
    """Runs store calls off the event loop, one at a time, in submission order."""

    def __init__(self, store: Store, reader: Store | None = None) -> None:
        self.store = store
        # Reads of committed state (the worker's lookups) run on their own read-only connection
        # and thread, so they never queue behind the writer's commits and fsyncs.
        self.reader = reader
        self._reader_executor = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="state-reader")
                                 if reader is not None else None)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="state-writer")
        self._pending: list[tuple[Callable[[Tx], Any], asyncio.Future[Any]]] = []
        self._pending_lock = threading.Lock()
        self._drain_scheduled = False

    async def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def transact(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Runs ``fn(tx, *args, **kwargs)`` atomically (its own savepoint) and returns once the
        transaction holding it has committed; concurrent calls share one commit."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        with self._pending_lock:
            self._pending.append((lambda tx: fn(tx, *args, **kwargs), future))
            schedule = not self._drain_scheduled
            self._drain_scheduled = True
        if schedule:
            self._executor.submit(self._drain)
        return await future

    def _drain(self) -> None:
        """Writer thread: runs everything queued so far as one group, then answers each caller."""
        with self._pending_lock:
            batch = self._pending[:_MAX_GROUP]
            del self._pending[:_MAX_GROUP]
            more = bool(self._pending)
            self._drain_scheduled = more
        if more:
            self._executor.submit(self._drain)  # behind anything call() queued meanwhile
        try:
            outcomes = self.store.transaction_group([unit for unit, _ in batch])
        except BaseException as exc:  # noqa: BLE001 - no caller may be left waiting
            outcomes = [(False, exc)] * len(batch)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
            by_loop.setdefault(future.get_loop(), []).append((future, ok, value))
        for loop, answers in by_loop.items():
            try:
                loop.call_soon_threadsafe(_answer, answers)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass

    async def read(self, fn: Callable[[Store], T]) -> T:
        return await self.call(fn, self.store)

    async def query(self, fn: Callable[[Tx], T]) -> T:
        """Runs a read-only ``fn(tx)`` against committed data (everything a finished
        ``transact`` wrote is visible). Never use it for a read that decides a write: that
        belongs inside the write's own ``transact``."""
        if self.reader is None or self._reader_executor is None:
            return await self.transact(fn)
        reader = self.reader
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader_executor, lambda: fn(Tx(reader.conn)))

    def close(self) -> None:
        if self._reader_executor is not None:
            self._reader_executor.shutdown(wait=True)
        if self.reader is not None:
            self.reader.close()
        self._executor.shutdown(wait=True)
        self.store.close()
