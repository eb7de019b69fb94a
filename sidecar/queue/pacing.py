"""Provides Pacing: webhook acknowledgements come first, without starving the queue.

Chatwoot gives up on a webhook after 5 s and never resends an account webhook, so answering it
matters more than anything the sidecar does in the background. The signal is how late the event
loop runs: a timer that should fire every ``interval`` seconds measures its own lateness, which is
exactly how long a newly arrived request waits before the loop looks at it.

While the loop is late by more than ``target``, the share of background work is halved (at most
once per window) down to ``floor``; while it is on time (under half the target), the share grows
back by ``step`` per window (additive increase, multiplicative decrease). Background loops ask
:meth:`Pacing.claim_limit` how many new jobs to start and :meth:`Pacing.yield_to_intake` before
each batch. At full speed both are free: no pause, the whole concurrency.

The old rule (a fixed eighth of the concurrency whenever the process used most of a core) starved
answering exactly when the process was busy, which is always under load: fed 433 messages/s, it
answered 77/s. Latency, not CPU share, is what webhooks feel.
"""

from __future__ import annotations

import asyncio
import math

TARGET_LATENESS_SECONDS = 0.025
"""Lateness of the event loop above which background work steps back (p99 intake target: 50 ms)."""


class Pacing:
    """The background share (0 < share <= 1) steered by the event loop's lateness."""

    def __init__(self, *, target: float = TARGET_LATENESS_SECONDS, interval: float = 0.02, window: float = 0.2,
                 floor: float = 0.125, step: float = 0.05) -> None:
        self.target = target
        self.interval = interval
        self.window = window
        self.floor = floor
        self.step = step
        self.share = 1.0
        self.lateness = 0.0
        """The worst lateness in the last complete window (seconds)."""
        self._worst = 0.0
        self._window_started = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- measuring ----------------------------------------------------------------------------
    def start(self) -> None:
        """Starts the lateness timer on the running loop (idempotent)."""
        if self._handle is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._window_started = self._loop.time()
        self._schedule()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self) -> None:
        assert self._loop is not None
        expected = self._loop.time() + self.interval
        self._handle = self._loop.call_at(expected, self._tick, expected)

    def _tick(self, expected: float) -> None:
        assert self._loop is not None
        now = self._loop.time()
        self.observe(now - expected, now)
        self._schedule()

    def observe(self, lateness: float, now: float) -> None:
        """One lateness sample; closes the window when it is over (tests call this directly)."""
        self._worst = max(self._worst, lateness)
        if now - self._window_started < self.window:
            return
        self.lateness, self._worst, self._window_started = self._worst, 0.0, now
        if self.lateness > self.target:
            self.share = max(self.floor, self.share / 2)
        elif self.lateness < self.target / 2:
            self.share = min(1.0, self.share + self.step)

    # -- steering ------------------------------------------------------------------------------
    @property
    def saturated(self) -> bool:
        return self.share < 1.0

    def claim_limit(self, free: int) -> int:
        """How many of ``free`` job slots to fill now (at least one, so the queue always moves)."""
        if free <= 0:
            return 0
        return max(1, math.floor(free * self.share))

    async def yield_to_intake(self) -> None:
        """A pause before a background batch while webhooks wait: longer the lower the share.
        At full share it returns at once."""
        if self.share >= 1.0:
            return
        await asyncio.sleep(self.window * (1.0 - self.share))


def unpaced() -> Pacing:
    """A Pacing that never steps back (tests and tools that have no intake to protect)."""
    pacing = Pacing()
    pacing.observe = _ignore  # type: ignore[method-assign]
    return pacing


def _ignore(lateness: float, now: float) -> None:
    return None
