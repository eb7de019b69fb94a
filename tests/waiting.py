"""Provides wait_until: the suite's one poll-with-deadline helper.

For state that changes where no event reaches the test (a row the sidecar commits, a probe
that runs in the background, a file watcher, a screen that redraws), the test waits on the
condition itself, re-checked every ``interval`` seconds until ``timeout``: never a fixed settle.
Where an event does exist (FakeChatwoot.wait_for, FakeCrew.wait_for, a log line), wait on it.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

DEFAULT_TIMEOUT = 20.0
"""Generous on purpose: CI is a busy 2-core box; a wait that holds returns as soon as it holds."""


async def wait_until(check: Callable[[], Any], *, until: Callable[[Any], Any] | None = None,
                     timeout: float = DEFAULT_TIMEOUT, interval: float = 0.05, what: str = "condition") -> Any:
    """Calls ``check()`` (sync or async) until its value is truthy, or, with ``until``, until
    ``until(value)`` holds; returns that value.

    Args:
        check: reads the state (a database query, an HTTP call, the screen). May be async.
        until: a test on what ``check`` returned (sync or async); by default the value's truth.
        timeout: seconds before giving up.
        interval: pause between two checks (a poll interval, not a wait for the outcome).
        what: names the condition in the failure message.

    Raises:
        AssertionError: still not true after ``timeout`` seconds (the message shows the last value).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        held = value if until is None else until(value)
        if inspect.isawaitable(held):
            held = await held
        if held:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout}s: {what}; last value: {str(value)[:2000]}")
        await asyncio.sleep(interval)
