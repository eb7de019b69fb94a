"""Provides Slots: named limits on calls in flight (one per crew back-end, one for Chatwoot).

A caller waits for a free slot *before* its call's clock starts, so time spent queueing is never
counted against a call's timeout (a slow crew must not make the calls behind it time out and be
retried, paying the crew twice). Limits follow the live config: a change applies to the next
call. The counts feed /health, /metrics and the console.
"""

from __future__ import annotations

import asyncio
from collections import deque


class _Pool:
    __slots__ = ("limit", "in_use", "peak", "waiters")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0
        self.peak = 0
        self.waiters: deque[asyncio.Future[None]] = deque()

    def _grant(self) -> None:
        while self.waiters and self.in_use < self.limit:
            waiter = self.waiters.popleft()
            if not waiter.done():
                self.in_use += 1
                self.peak = max(self.peak, self.in_use)
                waiter.set_result(None)

    async def acquire(self) -> None:
        if self.in_use < self.limit and not self.waiters:
            self.in_use += 1
            if self.in_use > self.peak:
                self.peak = self.in_use
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # granted just as we were cancelled: hand it on
            else:
                try:
                    self.waiters.remove(waiter)
                except ValueError:
                    pass
            raise

    def release(self) -> None:
        self.in_use -= 1
        self._grant()


class _Slot:
    __slots__ = ("_pool",)

    def __init__(self, pool: _Pool) -> None:
        self._pool = pool

    async def __aenter__(self) -> None:
        await self._pool.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self._pool.release()


class Slots:
    """Named pools of call slots; each name's limit can change at any time."""

    def __init__(self) -> None:
        self._pools: dict[str, _Pool] = {}

    def slot(self, name: str, limit: int) -> _Slot:
        """``async with slots.slot("suporte", 256):`` holds one of ``limit`` slots of ``name``."""
        pool = self._pools.get(name)
        if pool is None:
            pool = self._pools[name] = _Pool(limit)
        elif pool.limit != limit:
            pool.limit = limit
            pool._grant()  # a raised limit lets waiters in at once
        return _Slot(pool)

    def in_flight(self) -> dict[str, int]:
        return {name: pool.in_use for name, pool in self._pools.items()}

    def waiting(self) -> dict[str, int]:
        return {name: len(pool.waiters) for name, pool in self._pools.items()}

    def describe(self) -> dict[str, dict[str, int]]:
        """Per name: in flight, waiting for a slot, the limit, and the peak since start."""
        return {name: {"in_flight": p.in_use, "waiting": len(p.waiters), "limit": p.limit, "peak": p.peak}
                for name, p in self._pools.items()}
