"""Provides ConsoleContext: the dependencies every screen receives (no globals)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from console.actions import Operator
from console.reader import Reader


@dataclass(slots=True)
class ConsoleContext:
    """What screens need: where to read, how to write, what time it is, how often to look."""

    reader: Reader
    operator: Operator
    refresh_seconds: float = 1.0
    clock: Callable[[], float] = field(default=time.time)
    """Injectable so tests and snapshots show stable ages."""

    @property
    def db_label(self) -> str:
        """The database file name (the full path can be long and is machine-specific)."""
        return os.path.basename(self.reader.path) or self.reader.path

    @classmethod
    def for_path(
        cls, path: str, *, refresh_seconds: float = 1.0, clock: Callable[[], float] = time.time,
        actor: str | None = None,
    ) -> ConsoleContext:
        return cls(reader=Reader(path, clock), operator=Operator(path, actor),
                   refresh_seconds=refresh_seconds, clock=clock)
