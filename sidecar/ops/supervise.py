"""Provides Supervisor: keeps the background loops running through errors nobody foresaw.

The applier, the queue worker and the metrics flusher loop until shutdown and handle the
failures they expect (storage unavailable) themselves. Anything else used to end the loop
silently: webhooks were still acknowledged and journaled, but never applied or answered, and
/health said ok. The supervisor logs the error, counts it, restarts the loop after a growing
pause, and tells /health (a warning, and ``degraded`` while crashes are recent).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from sidecar.ops.logs import REDACTOR, get_logger, log_event
from sidecar.ops.metrics import Metrics

log = get_logger()

RECENT_SECONDS = 60.0
"""A crash this recent makes /health degraded (the restart pauses grow to 30 s, so a loop
that keeps failing keeps it degraded)."""
WARN_SECONDS = 3600.0
"""How long a crash stays listed in /health's warnings after the loop recovered."""
_ERROR_CHARS = 200


@dataclass(slots=True)
class Crashes:
    count: int
    last_error: str
    last_at: float


class Supervisor:
    def __init__(self, metrics: Metrics, *, first_pause: float = 1.0, max_pause: float = 30.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._metrics = metrics
        self._first_pause = first_pause
        self._max_pause = max_pause
        self._clock = clock
        self.crashes: dict[str, Crashes] = {}

    async def keep_running(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Runs ``loop()`` until it returns or is cancelled, restarting it after any error."""
        pause = self._first_pause
        while True:
            started = time.monotonic()
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the point: no error may end the loop
                if time.monotonic() - started > self._max_pause:
                    pause = self._first_pause  # it had been working: not a crash loop
                self._record(name, exc, pause)
            # A deliberate pause (not a wait for an event): a loop that fails at once would
            # otherwise spin and fill the log.
            await asyncio.sleep(pause)
            pause = min(max(pause * 2, self._first_pause), self._max_pause)

    def _record(self, name: str, exc: Exception, pause: float) -> None:
        # Redacted here, not only in the log: the text also goes into /health and the console.
        error = REDACTOR.redact(f"{type(exc).__name__}: {exc}")[:_ERROR_CHARS]
        seen = self.crashes.get(name)
        count = seen.count + 1 if seen else 1
        self.crashes[name] = Crashes(count, error, self._clock())
        self._metrics.inc("connector_background_restarts_total", task=name)
        log_event(log, "background.crashed", level=40, task=name, error=error, crashes=count,
                  restart_in_s=pause)

    def recently_crashed(self) -> bool:
        now = self._clock()
        return any(now - c.last_at < RECENT_SECONDS for c in self.crashes.values())

    def warnings(self) -> Iterator[str]:
        now = self._clock()
        for name, c in sorted(self.crashes.items()):
            if now - c.last_at < WARN_SECONDS:
                yield (f"background task {name} failed {c.count} time(s) and was restarted; "
                       f"last {now - c.last_at:.0f}s ago: {c.last_error}")
