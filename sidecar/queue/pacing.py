"""Provides the CPU-saturation measure that puts acknowledgements before background work.

Chatwoot gives up on a webhook after 5 s, and the webhook is the only copy of the message, so
while the process has no spare CPU the background loops (the delivery applier, the queue
worker) step back to a share of the time; when there is spare CPU they run freely.
"""

from __future__ import annotations

import time
from collections.abc import Callable

SATURATED_SHARE = 0.125
"""Share of the time (applier) or of the concurrency (worker) background work keeps while the
process is CPU-saturated: enough that backlogs still move during a long burst."""


class CpuSaturation:
    """Whether this process has been using (about) a whole core lately.

    Python code runs one thread at a time, so a process whose CPU time grows as fast as the
    clock has no spare capacity: any work added then delays the webhooks waiting for it.
    Measured over a sliding window of ``window`` seconds; re-evaluated at most once per window.
    The threshold is below 1 because the kernel's network work for our sockets runs on the
    same core without being counted as our CPU time: a sidecar pinned to one core and
    answering as fast as it can (even a no-op endpoint) measured 0.77-0.80 here.
    """

    def __init__(self, *, window: float = 0.25, threshold: float = 0.75,
                 clock: Callable[[], float] = time.monotonic, cpu: Callable[[], float] = time.process_time) -> None:
        self.window = window
        self.threshold = threshold
        self._clock, self._cpu = clock, cpu
        self._since, self._cpu_since = clock(), cpu()
        self._saturated = False

    def __call__(self) -> bool:
        now = self._clock()
        if now - self._since >= self.window:
            used = self._cpu()
            self._saturated = (used - self._cpu_since) / (now - self._since) >= self.threshold
            self._since, self._cpu_since = now, used
        return self._saturated
