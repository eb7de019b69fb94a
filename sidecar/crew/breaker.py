"""Provides a per-back-end circuit breaker (closed -> open -> half-open -> closed).

When most recent requests to a back-end fail, we stop sending for a while instead of
burning every conversation's attempts against a dead service; one probe then decides.
Breakers are consulted from the event loop and from the state writer's thread (the queue
worker routes jobs inside its claim transaction), so each one takes a lock.
"""

from __future__ import annotations

import threading
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
        self._failures = 0
        """Failures in ``_outcomes`` (kept as a running count: the window can hold 100,000s)."""
        self._lock = threading.Lock()
        self.state = CLOSED
        self.opened_at: float | None = None
        self._probe_in_flight = False
        self._probe_started = 0.0
        self.trips = 0

    def _trim(self, now: float) -> None:
        outcomes = self._outcomes
        while outcomes and outcomes[0][0] < now - _WINDOW_SECONDS:
            if not outcomes.popleft()[1]:
                self._failures -= 1

    def allow(self) -> bool:
        """True if a request may go out now (in half-open state: exactly one probe)."""
        with self._lock:
            return self._allow()

    def _allow(self) -> bool:
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
        with self._lock:
            self._record(success)

    def _record(self, success: bool) -> None:
        settings = self._settings()
        now = self._clock()
        if self.state == HALF_OPEN:
            self._probe_in_flight = False
            if success:
                self.state, self.opened_at = CLOSED, None
                self._outcomes.clear()
                self._failures = 0
            else:
                self.state, self.opened_at = OPEN, now
                self.trips += 1
            return
        self._outcomes.append((now, success))
        if not success:
            self._failures += 1
        self._trim(now)
        if not settings.enabled or self.state != CLOSED:
            return
        total = len(self._outcomes)
        if total >= settings.min_requests and self._failures / total >= settings.failure_ratio:
            self.state, self.opened_at = OPEN, now
            self.trips += 1

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            now = self._clock()
            self._trim(now)
            total = len(self._outcomes)
            failures = self._failures
        return {
            "state": self.state,
            "recent_requests": total,
            "recent_failures": failures,
            "opened_at": self.opened_at,
            "trips": self.trips,
        }


class BreakerBoard:
    """One circuit breaker per back-end key, sharing the live settings."""

    def __init__(self, settings: Callable[[], BreakerSettings]) -> None:
        self._settings = settings
        self._breakers: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> CircuitBreaker:
        breaker = self._breakers.get(key)
        if breaker is None:
            with self._lock:
                breaker = self._breakers.get(key)
                if breaker is None:
                    breaker = self._breakers[key] = CircuitBreaker(key, self._settings)
        return breaker

    def snapshot(self) -> dict[str, dict[str, object]]:
        return {key: b.snapshot() for key, b in list(self._breakers.items())}
