"""Provides SqliteService: the sidecar's asynchronous access to the SQLite state.

Every write runs on one dedicated writer thread, every read on one reader thread with its own
read-only connection, so the event loop never waits for SQLite (commits block on fsync; reads
never queue behind commits).

Group commit: writes that arrive while the writer is busy (typically while it waits for an fsync)
run together in one transaction, each in its own savepoint, with a single COMMIT
(``SqliteDatabase.run_group``). Every caller is answered only after the COMMIT holding its own
work has returned, and the group's commit is durable (synchronous=FULL) when any of its writes
asked for it.
"""

from __future__ import annotations

import asyncio
import functools
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from state.handoff import deliver as _deliver
from state.sqlite.database import SqliteDatabase
from state.tx import Tx

T = TypeVar("T")
MAX_GROUP = 128
"""Most writes committed together (bounds the latency one commit can add)."""
_STOP = object()


class _Lane:
    """A thread that runs work items from a queue, in order."""

    def __init__(self, name: str, run: Callable[[list[Any]], list[tuple[Any, bool, Any]]], batch: int) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._run = run
        self._batch = batch
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> None:
        self._queue.put(item)

    def _loop(self) -> None:
        q = self._queue
        while True:
            item = q.get()
            if item is _STOP:
                return
            items = [item]
            while len(items) < self._batch:
                try:
                    more = q.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    self._finish(items)
                    return
                items.append(more)
            self._finish(items)

    def _finish(self, items: list[Any]) -> None:
        try:
            results = self._run(items)
        except BaseException as exc:  # noqa: BLE001 - no caller may be left waiting
            results = [(item[0], False, exc) for item in items]
        _deliver(results)

    def stop(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=30)


class SqliteService:
    """Asynchronous writes (group commit) and reads of the SQLite state."""

    kind = "sqlite"

    def __init__(self, path: str, *, migrate: bool = True) -> None:
        self.path = path
        self.location = path
        self.db = SqliteDatabase(path, migrate=migrate)
        self.reader = SqliteDatabase(path, readonly=True)
        self._writer = _Lane("state-writer", self._run_writes, MAX_GROUP)
        self._reads = _Lane("state-reader", self._run_reads, 1)

    # -- the event loop's side ---------------------------------------------------------------------
    async def write(self, unit: Callable[..., T], /, *args: Any, durable: bool = False, urgent: bool = False,
                    **kwargs: Any) -> T:
        """Runs ``unit(tx, *args, **kwargs)`` atomically and returns once the transaction holding
        it has committed (``durable``: with an fsync). Concurrent writes share one commit.

        ``urgent`` (a webhook waiting for its acknowledgement): committed in a group of its own,
        ahead of the other writes collected with it, so it never waits for a big background batch
        queued at the same moment."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._writer.submit((future, functools.partial(unit, **kwargs) if kwargs else unit, args, durable, urgent))
        return await future

    async def read(self, unit: Callable[..., T], /, *args: Any) -> T:
        """Runs a read-only ``unit(tx, *args)`` against committed data. Never use it for a read
        that decides a write: that belongs inside the write's own unit."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._reads.submit((future, unit, args))
        return await future

    async def call(self, fn: Callable[..., T], /, *args: Any) -> T:
        """Runs ``fn(database, *args)`` on the writer thread, outside any transaction (probes)."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._writer.submit((future, _RawCall(fn), args, False, False))
        return await future

    # -- the threads' side -----------------------------------------------------------------------------
    def _run_writes(self, items: list[Any]) -> list[tuple[Any, bool, Any]]:
        results: list[tuple[Any, bool, Any]] = []
        group: list[Any] = []

        def flush() -> None:
            if not group:
                return
            durable = any(item[3] for item in group)
            units = [_bind(item[1], item[2]) for item in group]
            for item, (ok, value) in zip(group, self.db.run_group(units, durable=durable), strict=True):
                results.append((item[0], ok, value))
            group.clear()

        urgent = [item for item in items if item[4]]
        if urgent and len(urgent) < len(items):
            group.extend(urgent)  # acknowledgements first, in a commit of their own
            flush()
            items = [item for item in items if not item[4]]
        for item in items:
            if isinstance(item[1], _RawCall):
                flush()
                try:
                    results.append((item[0], True, item[1].fn(self.db, *item[2])))
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    results.append((item[0], False, exc))
            else:
                group.append(item)
        flush()
        return results

    def _run_reads(self, items: list[Any]) -> list[tuple[Any, bool, Any]]:
        results: list[tuple[Any, bool, Any]] = []
        for future, unit, args in items:
            try:
                results.append((future, True, self.reader.read(unit, *args)))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                results.append((future, False, exc))
        return results

    def close(self) -> None:
        self._reads.stop()
        self._writer.stop()
        self.reader.close()
        self.db.close()


class _RawCall:
    __slots__ = ("fn",)

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn


def _bind(unit: Callable[..., Any], args: tuple[Any, ...]) -> Callable[[Tx], Any]:
    if not args:
        return unit
    return lambda tx: unit(tx, *args)
