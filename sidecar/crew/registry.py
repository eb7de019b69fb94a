"""Provides the crew registry: which back-end serves which crew name.

A crew listed under ``crews:`` uses its own back-end; every other crew goes to
``mcp_crew.*`` over HTTP (CONTRACT §5). Back-ends are rebuilt when the config changes.
"""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from sidecar.config import Config, CrewConfig
from sidecar.crew.base import CrewBackend
from sidecar.crew.http import HttpCrewBackend

BackendFactory = Callable[[CrewConfig, aiohttp.ClientSession, Config], CrewBackend]

# Other back-end kinds register themselves here (see sidecar/crew/__init__ docs).
FACTORIES: dict[str, BackendFactory] = {
    "http": lambda crew, session, config: HttpCrewBackend(
        session, url=crew.url, api_key=crew.token, dialect=crew.dialect, timeout_seconds=crew.timeout_seconds
    ),
}


class CrewRegistry:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self._config: Config | None = None
        self._default: CrewBackend | None = None
        self._named: dict[str, CrewBackend] = {}

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
        )
        named: dict[str, CrewBackend] = {}
        for crew in config.crews:
            factory = FACTORIES.get(crew.backend)
            if factory is not None:
                named[crew.name] = factory(crew, self.session, config)
        self._named = named

    def backend_for(self, crew: str) -> CrewBackend:
        assert self._default is not None, "refresh() first"
        return self._named.get(crew, self._default)

    def all_backends(self) -> dict[str, CrewBackend]:
        """``default`` plus every named crew's back-end (for health)."""
        assert self._default is not None, "refresh() first"
        return {"default": self._default, **self._named}
