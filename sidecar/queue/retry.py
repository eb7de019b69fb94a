"""Provides the retry schedule: exponential backoff with full jitter, honouring Retry-After."""

from __future__ import annotations

import random


def retry_delay(
    attempt: int,
    *,
    base: float,
    maximum: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    Full jitter (a uniform draw up to the exponential ceiling) spreads retries of many
    conversations so a recovering crew is not hit by all of them at once. A server's
    Retry-After is a floor: we never come back earlier than it asked.
    """
    ceiling = min(maximum, base * (2 ** max(0, attempt - 1)))
    delay = (rng or random).uniform(0, ceiling)
    if retry_after is not None and retry_after > 0:
        delay = max(delay, min(retry_after, maximum))
    return delay


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (HTTP-date forms are rare from APIs and ignored)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
