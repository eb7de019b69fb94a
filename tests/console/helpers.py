"""Provides small helpers shared by the console tests (reading the screen, waiting for it)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from textual.app import App
from textual.message import Message
from textual.pilot import Pilot

from console.messages import DataLoaded
from tests.waiting import DEFAULT_TIMEOUT, wait_until


def screen_text(app: App[None]) -> str:
    """What the terminal shows right now, as plain text (one line per row)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def settle(pilot: Pilot[None]) -> None:
    """Waits until pending workers finished and their messages were handled.

    A worker's message can start another worker (an operator write posts OperatorDone, whose
    handler reloads the view), so the wait repeats for such chains.
    """
    for _ in range(3):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
    await pilot.pause()


class LoadWatcher:
    """A message hook that lets a test wait for a DataLoaded matching a predicate."""

    def __init__(self) -> None:
        self._waiters: list[tuple[Callable[[object], bool], asyncio.Event]] = []

    def __call__(self, message: Message) -> None:
        if isinstance(message, DataLoaded):
            for predicate, event in self._waiters:
                if predicate(message.data):
                    event.set()

    async def wait_for(self, predicate: Callable[[object], bool], timeout: float = DEFAULT_TIMEOUT) -> None:
        event = asyncio.Event()
        self._waiters.append((predicate, event))
        try:
            await asyncio.wait_for(event.wait(), timeout)
        finally:
            self._waiters.remove((predicate, event))


async def wait_for_screen(pilot: Pilot[None], check: Callable[[App[None]], Any], *, what: str,
                          timeout: float = DEFAULT_TIMEOUT) -> Any:
    """Lets the app run (workers, messages, redraws) until ``check(app)`` is truthy; returns its value.

    What a view shows arrives from a worker thread and a message or two later: a test waits for
    the screen it expects, never for a fixed number of turns.
    """
    async def look() -> Any:
        await settle(pilot)
        return check(pilot.app)

    return await wait_until(look, timeout=timeout, what=what)


async def wait_for_text(pilot: Pilot[None], text: str, timeout: float = DEFAULT_TIMEOUT, *,
                        present: bool = True) -> str:
    """Waits until ``text`` is (or, with present=False, is no longer) on screen: a write's effect
    arrives with the next refresh. Returns the screen's text."""
    shown = await wait_for_screen(
        pilot, lambda app: (text in screen_text(app)) == present and (screen_text(app) or " "),
        what=f"{text!r} {'on' if present else 'gone from'} the screen", timeout=timeout)
    return str(shown)
