"""Provides the sidecar's shared services (on ``app.ctx``) and the live config holder."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from sidecar.config import Config
from sidecar.crew.breaker import BreakerSettings, CircuitBreaker
from sidecar.crew.registry import CrewRegistry
from sidecar.ops.metrics import Metrics
from sidecar.outbound.chatwoot import ChatwootClient
from sidecar.queue.pacing import CpuSaturation
from state.writer import StateWriter


class ConfigHolder:
    """The running config; replaced as a whole on a live change (never mutated)."""

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


class BreakerBoard:
    """One circuit breaker per back-end key, sharing the live settings."""

    def __init__(self, config: ConfigHolder) -> None:
        self._config = config
        self._breakers: dict[str, CircuitBreaker] = {}

    def _settings(self) -> BreakerSettings:
        p = self._config.current.processing
        return BreakerSettings(p.breaker_failure_ratio, p.breaker_min_requests, p.breaker_open_seconds)

    def get(self, key: str) -> CircuitBreaker:
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = self._breakers[key] = CircuitBreaker(key, self._settings)
        return breaker

    def snapshot(self) -> dict[str, dict[str, object]]:
        return {key: b.snapshot() for key, b in self._breakers.items()}


def make_worker_id() -> str:
    """Identifies this process's leases (fencing: a stale worker cannot complete a job)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class Services:
    config: ConfigHolder
    writer: StateWriter
    session: aiohttp.ClientSession
    chatwoot: ChatwootClient
    crews: CrewRegistry
    metrics: Metrics
    breakers: BreakerBoard
    worker_id: str = field(default_factory=make_worker_id)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when there may be queue work for the worker."""
    journal_wake: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when a delivery was journaled and awaits the applier."""
    journal_problem: str | None = None
    """Why the applier's latest batch failed (None once a batch went through): /health shows it."""
    saturated: Callable[[], bool] = field(default_factory=CpuSaturation)
    """True while the process has no spare CPU: background work steps back (sidecar.queue.pacing)."""
    self_user_ids: set[int] = field(default_factory=set)
    """Chatwoot user ids the sidecar posts as (configured, or learned from create answers)."""
