"""Provides the messages that carry worker results back to the UI thread."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message


@dataclass
class DataLoaded(Message):
    """A screen's refresh produced new data."""

    generation: int
    data: Any
    version: int
    cost: float = 0.0
    """Seconds the queries took (slow views refresh less often)."""

    def can_replace(self, message: Message) -> bool:
        # A burst of refreshes collapses into the newest one if the UI falls behind.
        return isinstance(message, DataLoaded)


@dataclass
class DataUnchanged(Message):
    """A refresh found nothing new (the database did not change)."""

    generation: int


@dataclass
class ReadFailed(Message):
    """Reading the database failed; bubbles up to the app, which explains it."""

    generation: int
    error: str


@dataclass
class OperatorDone(Message):
    """An operator write finished (successfully or not)."""

    ok: bool
    text: str
