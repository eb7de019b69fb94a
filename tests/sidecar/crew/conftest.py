"""Fixtures for the crew back-end tests: a FastMCP crew server and a fake CrewAI AMP deployment."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from simulators.fake_amp import FakeAmp
from simulators.fake_mcp import FakeMcp
from state import Job
from tests.harness import SidecarBase


@pytest.fixture
async def mcp_server() -> AsyncIterator[FakeMcp]:
    async with FakeMcp() as fake:
        yield fake


@pytest.fixture
async def amp() -> AsyncIterator[FakeAmp]:
    async with FakeAmp() as fake:
        yield fake


def crews(**entries: dict[str, Any]) -> dict[str, Any]:
    """Config overrides with these ``crews:`` entries."""
    return {"crews": entries}


def jobs_of(proc: SidecarBase, account_id: int, conversation_id: int) -> list[Job]:
    return proc.query(lambda store: store.jobs.for_conversation(account_id, conversation_id))


async def finished_job(proc: SidecarBase, account_id: int, conversation_id: int, state: str = "done") -> Job:
    """The conversation's (only) job, once the sidecar logged it ``job.<state>``."""
    [job] = jobs_of(proc, account_id, conversation_id)
    await proc.wait_for_output(f"job.{state} job={job.id} ")
    [job] = jobs_of(proc, account_id, conversation_id)
    return job
