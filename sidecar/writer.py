"""Provides StateWriter: every database call of the sidecar runs on one dedicated thread.

SQLite allows one writer at a time and its commits (fsync, checkpoints) block; running
them on a single thread keeps the event loop free and gives us one writer by design.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from state import Store

T = TypeVar("T")


class StateWriter:
    """Runs store calls off the event loop, one at a time, in submission order."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="state-writer")

    async def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def transact(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Runs ``fn(tx, *args, **kwargs)`` inside one write transaction."""

        def run() -> T:
            with self.store.transaction() as tx:
                return fn(tx, *args, **kwargs)

        return await self.call(run)

    async def read(self, fn: Callable[[Store], T]) -> T:
        return await self.call(fn, self.store)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.store.close()
