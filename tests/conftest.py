"""Shared fixtures: fake Chatwoot and MCP-Crew servers, and a sidecar subprocess factory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from simulators import FakeChatwoot, FakeCrew
from tests import backends
from tests.harness import SECRET, SidecarProcess, sidecar_config

SidecarFactory = Callable[..., Awaitable[SidecarProcess]]


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


@pytest.fixture
async def sidecar_factory(tmp_path: Path, chatwoot: FakeChatwoot, crew: FakeCrew) -> AsyncIterator[SidecarFactory]:
    """Starts sidecars wired to the fakes; every one is stopped at the end of the test."""
    started: list[SidecarProcess] = []

    async def start(overrides: dict[str, Any] | None = None, *, env: dict[str, str] | None = None,
                    workdir: Path | None = None) -> SidecarProcess:
        config = sidecar_config(
            workdir or tmp_path, chatwoot_url=chatwoot.url, crew_url=crew.crew_url,
            chatwoot_token=chatwoot.token, crew_key=crew.api_key, overrides=overrides,
        )
        proc = SidecarProcess(workdir or tmp_path, config, env=env)
        await proc.start()
        started.append(proc)
        chatwoot.webhook_url = f"{proc.url}/webhook/chatwoot"
        return proc

    yield start
    for proc in started:
        await proc.stop()


@pytest.fixture
async def sidecar(sidecar_factory: SidecarFactory) -> SidecarProcess:
    return await sidecar_factory()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """On failure, attach the sidecar's output (the first place to look)."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        proc = item.funcargs.get("sidecar") if hasattr(item, "funcargs") else None
        procs = [proc] if proc is not None else []
        for i, p in enumerate(procs):
            report.sections.append((f"sidecar output {i}", "\n".join(p.output[-80:])))
