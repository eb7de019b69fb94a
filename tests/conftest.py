"""Shared fixtures: fake Chatwoot and MCP-Crew servers, and sidecars wired to them.

``sidecar`` / ``sidecar_factory`` run the sidecar in the test's own event loop (no process
boundary under test); ``process_factory`` starts ``python -m sidecar`` for the tests that need a
real process (kill -9, SIGTERM, exit statuses). Both kinds are stopped at the end of the test.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from simulators import FakeChatwoot, FakeCrew
from tests import backends
from tests.harness import (
    ENV_PREFIXES,
    SECRET,
    InProcessSidecar,
    SidecarProcess,
    sidecar_config,
)

SidecarFactory = Callable[..., Awaitable[InProcessSidecar]]
ProcessFactory = Callable[..., Awaitable[SidecarProcess]]
S = TypeVar("S", InProcessSidecar, SidecarProcess)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--backend", choices=(backends.SQLITE, backends.POSTGRES), default=None,
                     help="state back-end of the sidecars and seeded databases (default: "
                          "$CONNECTOR_TEST_BACKEND, else sqlite)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: checks SQLite itself (its files, locks, pragmas); "
                                       "skipped when the suite runs on PostgreSQL")
    chosen = config.getoption("--backend")
    if chosen:
        backends.set_backend(chosen)


def pytest_report_header(config: pytest.Config) -> str:
    return f"state back-end: {backends.BACKEND}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if backends.BACKEND == backends.POSTGRES:
        skip = pytest.mark.skip(reason="checks SQLite itself; the suite runs on PostgreSQL")
        for item in items:
            if item.get_closest_marker("sqlite_only"):
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _fresh_databases() -> Iterator[None]:
    """Every PostgreSQL database a test created is dropped when it ends (its sidecars are gone)."""
    yield
    backends.drop_created()


@pytest.fixture
async def chatwoot() -> AsyncIterator[FakeChatwoot]:
    async with FakeChatwoot(webhook_secret=SECRET) as fake:
        yield fake


@pytest.fixture
async def crew() -> AsyncIterator[FakeCrew]:
    async with FakeCrew() as fake:
        yield fake


def _config(where: Path, chatwoot: FakeChatwoot, crew: FakeCrew, overrides: dict[str, Any] | None) -> dict[str, Any]:
    return sidecar_config(where, chatwoot_url=chatwoot.url, crew_url=crew.crew_url, chatwoot_token=chatwoot.token,
                          crew_key=crew.api_key, overrides=overrides)


@pytest.fixture
async def sidecar_factory(request: pytest.FixtureRequest, tmp_path: Path, chatwoot: FakeChatwoot, crew: FakeCrew,
                          monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SidecarFactory]:
    """Starts in-process sidecars wired to the fakes; the fake Chatwoot delivers to the last one."""
    # The live config manager reads overrides from os.environ, as it does in a real process:
    # the test's environment, not the machine's.
    for name in [k for k in os.environ if k.startswith(ENV_PREFIXES)]:
        monkeypatch.delenv(name)
    started: list[InProcessSidecar] = []

    async def start(overrides: dict[str, Any] | None = None, *, env: dict[str, str] | None = None,
                    workdir: Path | None = None) -> InProcessSidecar:
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        where = workdir or tmp_path
        sidecar = InProcessSidecar(where, _config(where, chatwoot, crew, overrides), env=env)
        return await _started(request, started, sidecar, chatwoot)

    yield start
    for sidecar in reversed(started):
        await sidecar.stop()


@pytest.fixture
async def sidecar(sidecar_factory: SidecarFactory) -> InProcessSidecar:
    return await sidecar_factory()


@pytest.fixture
async def process_factory(request: pytest.FixtureRequest, tmp_path: Path, chatwoot: FakeChatwoot,
                          crew: FakeCrew) -> AsyncIterator[ProcessFactory]:
    """Starts ``python -m sidecar`` processes wired to the fakes; each is stopped at the end."""
    started: list[SidecarProcess] = []

    async def start(overrides: dict[str, Any] | None = None, *, env: dict[str, str] | None = None,
                    workdir: Path | None = None) -> SidecarProcess:
        where = workdir or tmp_path
        proc = SidecarProcess(where, _config(where, chatwoot, crew, overrides), env=env)
        return await _started(request, started, proc, chatwoot)

    yield start
    for proc in started:
        await proc.stop()


async def _started(request: pytest.FixtureRequest, started: list[S], sidecar: S, chatwoot: FakeChatwoot) -> S:
    """Starts ``sidecar``, keeps it for the teardown and the failure report, points Chatwoot at it."""
    started.append(sidecar)
    node: Any = request.node
    if not hasattr(node, "_sidecars"):
        node._sidecars = []
    node._sidecars.append(sidecar)  # their output goes into a failure's report
    await sidecar.start()
    chatwoot.webhook_url = sidecar.webhook_url
    return sidecar


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """On failure, attach each sidecar's log lines (the first place to look)."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for i, sidecar in enumerate(getattr(item, "_sidecars", [])):
            report.sections.append((f"sidecar output {i}", "\n".join(sidecar.output[-80:])))
