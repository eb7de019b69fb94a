"""Provides the hand-off of results from the state's threads back to the callers' event loops."""

from __future__ import annotations

import asyncio
from typing import Any

Result = tuple[asyncio.Future[Any], bool, Any]
"""(the caller's future, ok, result or exception)."""


def _answer(answers: list[Result]) -> None:
    for future, ok, value in answers:
        if future.cancelled():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


def deliver(results: list[Result]) -> None:
    """Hands results back to their event loops: one wake-up per loop, not one per caller."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Result]] = {}
    for item in results:
        by_loop.setdefault(item[0].get_loop(), []).append(item)
    for loop, answers in by_loop.items():
        try:
            loop.call_soon_threadsafe(_answer, answers)
        except RuntimeError:  # that loop is closed: nobody is waiting any more
            pass
