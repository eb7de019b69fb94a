"""Provides a per-back-end circuit breaker (closed -> open -> half-open -> closed).

When most recent requests to a back-end fail, we stop sending for a while instead of
burning every conversation's attempts against a dead service; one probe then decides.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
_WINDOW_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    failure_ratio: float
    min_requests: int
    open_seconds: float

    @property
    def enabled(self) -> bool:
        return self.min_requests > 0


class CircuitBreaker:
    """Failure accounting for one back-end (4xx answers are not failures of the back-end)."""

    def __init__(self, name: str, settings: Callable[[], BreakerSettings], clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self._settings = settings
        self._clock = clock
        self._outcomes: deque[tuple[float, bool]] = deque()
        self.state = CLOSED
        self.opened_at: float | None = None
        self._probe_in_flight = False
        self._probe_started = 0.0
        self.trips = 0

    def _trim(self, now: float) -> None:
        while self._outcomes and self._outcomes[0][0] < now - _WINDOW_SECONDS:
            self._outcomes.popleft()

    def allow(self) -> bool:
        """True if a request may go out now (in half-open state: exactly one probe)."""
        settings = self._settings()
        if not settings.enabled:
            return True
        now = self._clock()
        if self.state == OPEN:
            if self.opened_at is not None and now - self.opened_at >= settings.open_seconds:
                self.state = HALF_OPEN
                self._probe_in_flight = False
            else:
                return False
        if self.state == HALF_OPEN:
            # A probe whose outcome never came back (its job crashed) must not block forever.
            if self._probe_in_flight and now - self._probe_started < max(settings.open_seconds, 1.0):
                return False
            self._probe_in_flight = True
            self._probe_started = now
        return True

    def retry_at(self) -> float:
        """When a deferred request should try again."""
        settings = self._settings()
        if self.state == OPEN and self.opened_at is not None:
            return self.opened_at + settings.open_seconds
        return self._clock() + min(1.0, settings.open_seconds)

    def record(self, success: bool) -> None:
        settings = self._settings()
        now = self._clock()
        if self.state == HALF_OPEN:
            self._probe_in_flight = False
            if success:
                self.state, self.opened_at = CLOSED, None
                self._outcomes.clear()
            else:
                self.state, self.opened_at = OPEN, now
                self.trips += 1
            return
        self._outcomes.append((now, success))
        self._trim(now)
        if not settings.enabled or self.state != CLOSED:
            return
        total = len(self._outcomes)
        failures = sum(1 for _, ok in self._outcomes if not ok)
        if total >= settings.min_requests and failures / total >= settings.failure_ratio:
            self.state, self.opened_at = OPEN, now
            self.trips += 1

    def snapshot(self) -> dict[str, object]:
        now = self._clock()
        self._trim(now)
        total = len(self._outcomes)
        failures = sum(1 for _, ok in self._outcomes if not ok)
        return {
            "state": self.state,
            "recent_requests": total,
            "recent_failures": failures,
            "opened_at": self.opened_at,
            "trips": self.trips,
        }
