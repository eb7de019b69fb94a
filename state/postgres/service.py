"""Provides PostgresService: the sidecar's asynchronous access to the PostgreSQL state.

The same interface as SqliteService (``await write(unit, *args, durable=)``, ``await read(unit)``,
``await call(fn)``, ``close()``). Units of work are the same synchronous functions on both
back-ends; here they run on a bounded pool of threads, each owning one connection for its life
(a :class:`PostgresDatabase`), so several transactions commit at once and the event loop never
waits for the server. A connection that breaks is replaced by its thread on the next unit: after
an outage the sidecar recovers by itself.

No group commit of our own: PostgreSQL flushes the WAL for concurrent commits together, and a
transaction per unit holds its row locks for the shortest time (other processes claim and
apply at the same moment). Two units submitted at the same time may commit in either order, as
they would from two processes; a caller that needs an order awaits the first.
"""

from __future__ import annotations

import asyncio
import functools
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from state.errors import StorageUnavailable
from state.handoff import Result, deliver
from state.postgres import DEFAULT_POOL_SIZE
from state.postgres.database import PostgresDatabase

T = TypeVar("T")
_STOP = object()
_WRITE, _READ, _CALL = 0, 1, 2


class PostgresService:
    """Asynchronous writes and reads of the PostgreSQL state on a pool of connections."""

    kind = "postgresql"

    def __init__(self, url: str, *, migrate: bool = True, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        self.url = url
        self.location = url
        # Migrates and checks the schema once; then it is the first thread's connection.
        first = PostgresDatabase(url, migrate=migrate)
        self.path = first.path
        self.db = first
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._loop, args=(first if i == 0 else None,),
                                          name=f"state-pg-{i}", daemon=True) for i in range(max(1, pool_size))]
        for thread in self._threads:
            thread.start()

    # -- the event loop's side ---------------------------------------------------------------------
    def _submit(self, kind: int, fn: Callable[..., Any], args: tuple[Any, ...], durable: bool) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put((future, kind, fn, args, durable))
        return future

    async def write(self, unit: Callable[..., T], /, *args: Any, durable: bool = False, urgent: bool = False,
                    **kwargs: Any) -> T:
        """Runs ``unit(tx, *args, **kwargs)`` in a transaction and returns once it committed
        (``durable``: the commit waited for its WAL flush). ``urgent`` (a webhook waiting for its
        acknowledgement) changes nothing here: every unit commits on its own, so none waits
        behind another's batch, only for a free connection."""
        return await self._submit(_WRITE, functools.partial(unit, **kwargs) if kwargs else unit, args, durable)

    async def read(self, unit: Callable[..., T], /, *args: Any) -> T:
        """Runs a read-only ``unit(tx, *args)`` against committed data. Never use it for a read
        that decides a write: that belongs inside the write's own unit."""
        return await self._submit(_READ, unit, args, False)

    async def call(self, fn: Callable[..., T], /, *args: Any) -> T:
        """Runs ``fn(database, *args)`` on a pool thread, outside any transaction (probes)."""
        return await self._submit(_CALL, fn, args, False)

    # -- the threads' side -----------------------------------------------------------------------------
    def _loop(self, db: PostgresDatabase | None) -> None:
        q = self._queue
        try:
            while True:
                item = q.get()
                if item is _STOP:
                    return
                future, kind, fn, args, durable = item
                try:
                    if db is None:
                        db = PostgresDatabase(self.url, check=False)
                    if kind == _WRITE:
                        result: Result = (future, True, db.write(fn, *args, durable=durable))
                    elif kind == _READ:
                        result = (future, True, db.read(fn, *args))
                    else:
                        result = (future, True, fn(db, *args))
                except StorageUnavailable as exc:
                    if db is not None and db._conn is None:
                        db = None  # reconnect (and find out whether the server is back) next time
                    result = (future, False, exc)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    result = (future, False, exc)
                deliver([result])
        finally:
            if db is not None:
                db.close()

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join(timeout=30)
