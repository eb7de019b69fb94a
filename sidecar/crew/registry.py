"""Provides the crew registry: which back-end serves which crew name.

A crew listed under ``crews:`` uses its own back-end (``http``, ``mcp``, ``crewai_amp`` or
``local``); every other crew goes to ``mcp_crew.*`` over HTTP (CONTRACT §5). Back-ends are
rebuilt when the config changes; a back-end whose settings did not change is kept, so a live
config edit elsewhere does not drop its MCP session, and replaced ones are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import aiohttp

from sidecar.config import Config, CrewConfig
from sidecar.crew.amp import AmpCrewBackend
from sidecar.crew.base import CrewBackend
from sidecar.crew.http import HttpCrewBackend
from sidecar.crew.local import LocalCrewBackend
from sidecar.crew.mcp import McpCrewBackend
from sidecar.outbound.http11 import Http11

BackendFactory = Callable[[CrewConfig, aiohttp.ClientSession, Config, Http11], CrewBackend]


def callback_secret(crew: CrewConfig, config: Config) -> str:
    """Signs a crew's callback URLs: its own token, else ``mcp_crew.api_key``."""
    return crew.token or config.mcp_crew.api_key


FACTORIES: dict[str, BackendFactory] = {
    "http": lambda crew, session, config, http: HttpCrewBackend(
        session, url=crew.url, api_key=crew.token, dialect=crew.dialect, timeout_seconds=crew.timeout_seconds,
        http=http,
    ),
    "mcp": lambda crew, session, config, http: McpCrewBackend(crew),
    "crewai_amp": lambda crew, session, config, http: AmpCrewBackend(
        session, crew, public_url=config.server.public_url, callback_secret=callback_secret(crew, config)
    ),
    "local": lambda crew, session, config, http: LocalCrewBackend(crew),
}


def _identity(crew: CrewConfig, config: Config) -> tuple[Any, ...]:
    """Everything a back-end is built from: equal identities can share one back-end."""
    return (crew, config.server.public_url, callback_secret(crew, config))


class CrewRegistry:
    def __init__(self, session: aiohttp.ClientSession, http: Http11 | None = None) -> None:
        self.session = session
        self.http = http or Http11()
        self._config: Config | None = None
        self._default: CrewBackend | None = None
        self._named: dict[str, CrewBackend] = {}
        self._built: dict[str, tuple[Any, ...]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def refresh(self, config: Config) -> None:
        """Rebuilds back-ends if the config object changed (live reload)."""
        if config is self._config:
            return
        self._config = config
        self._default = HttpCrewBackend(
            self.session,
            url=config.mcp_crew.api_url,
            api_key=config.mcp_crew.api_key,
            dialect=config.mcp_crew.dialect,
            timeout_seconds=config.mcp_crew.timeout_seconds,
            http=self.http,
        )
        named: dict[str, CrewBackend] = {}
        built: dict[str, tuple[Any, ...]] = {}
        for crew in config.crews:
            factory = FACTORIES.get(crew.backend)
            if factory is None:
                continue
            identity = _identity(crew, config)
            old = self._named.get(crew.name)
            if old is not None and self._built.get(crew.name) == identity:
                named[crew.name] = old
            else:
                named[crew.name] = factory(crew, self.session, config, self.http)
            built[crew.name] = identity
        retired = [b for name, b in self._named.items() if named.get(name) is not b]
        self._named, self._built = named, built
        for backend in retired:
            self._close_later(backend)

    def _close_later(self, backend: CrewBackend) -> None:
        # refresh() is synchronous (called from the worker and the config listener); closing
        # an MCP session is not, so it runs as a task. close() lets in-flight calls finish.
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(backend.close(), name=f"close-{backend.kind}-backend")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def backend_for(self, crew: str) -> CrewBackend:
        assert self._default is not None, "refresh() first"
        return self._named.get(crew, self._default)

    def resolve(self, crew: str) -> tuple[str, CrewBackend, int]:
        """The back-end serving ``crew``: its name (``default`` for MCP-Crew over HTTP, else the
        crew's own), the back-end, and how many requests it may have in flight."""
        assert self._default is not None and self._config is not None, "refresh() first"
        backend = self._named.get(crew)
        if backend is None:
            return "default", self._default, self._config.mcp_crew.max_in_flight
        crew_config = self._config.crew(crew)
        return crew, backend, crew_config.max_in_flight if crew_config else self._config.mcp_crew.max_in_flight

    def all_backends(self) -> dict[str, CrewBackend]:
        """``default`` plus every named crew's back-end (for health)."""
        assert self._default is not None, "refresh() first"
        return {"default": self._default, **self._named}

    async def close(self) -> None:
        """Closes every back-end (MCP sessions end with a DELETE); call once at shutdown."""
        backends = list(self._named.values()) + ([self._default] if self._default else [])
        self._named, self._built = {}, {}
        for backend in backends:
            with contextlib.suppress(Exception):
                await backend.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
