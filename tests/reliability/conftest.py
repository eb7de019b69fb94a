"""Fixtures for the fault suite: the shared fakes, made configurable per test.

``@pytest.mark.parametrize("chatwoot", [{"token_kind": "user"}], indirect=True)`` starts the
fake Chatwoot with other knobs (token kind, echo timing); every other fixture is the shared one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from simulators import FakeChatwoot
from tests.harness import SECRET


@pytest.fixture
async def chatwoot(request: pytest.FixtureRequest) -> AsyncIterator[FakeChatwoot]:
    options: dict[str, Any] = dict(getattr(request, "param", None) or {})
    fake = FakeChatwoot(webhook_secret=SECRET, **options)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
