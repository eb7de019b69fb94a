"""Provides small helpers shared by the console tests (reading the screen, settling)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from textual.app import App
from textual.message import Message
from textual.pilot import Pilot

from console.messages import DataLoaded


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

    async def wait_for(self, predicate: Callable[[object], bool], timeout: float = 5.0) -> None:
        event = asyncio.Event()
        self._waiters.append((predicate, event))
        try:
            await asyncio.wait_for(event.wait(), timeout)
        finally:
            self._waiters.remove((predicate, event))


async def wait_for_text(pilot: Pilot[None], text: str, timeout: float = 5.0, *, present: bool = True) -> str:
    """Settles until ``text`` is (or, with present=False, is no longer) on screen: a write's
    effect arrives with the next refresh."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        await settle(pilot)
        shown = screen_text(pilot.app)
        if (text in shown) == present:
            return shown
        if loop.time() > deadline:
            print(f"gave up waiting for {text!r} to {'appear' if present else 'go'}; the screen:\n{shown}")
            return shown
        await pilot.pause(0.05)
