"""Provides ConfigHolder: the running config, replaced as a whole on a live change (never mutated)."""

from __future__ import annotations

from collections.abc import Callable

from connector_config import Config


class ConfigHolder:
    """Components keep the holder (or its ``current`` as a callable) and read it when they act,
    so a live change applies to the next thing each of them does."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._listeners: list[Callable[[Config, Config], None]] = []

    @property
    def current(self) -> Config:
        return self._config

    def __call__(self) -> Config:
        return self._config

    def replace(self, new: Config) -> Config:
        old, self._config = self._config, new
        for listener in list(self._listeners):
            listener(old, new)
        return old

    def on_change(self, listener: Callable[[Config, Config], None]) -> None:
        self._listeners.append(listener)
