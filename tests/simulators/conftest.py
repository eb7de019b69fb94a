"""Fixtures of the simulator tests: a signature-checking webhook receiver and a plain HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.simulators.helpers import Receiver


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = await Receiver(secret="whsec-test-secret").start()
    yield rec
    await rec.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session
