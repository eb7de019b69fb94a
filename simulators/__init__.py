"""Simulated Chatwoot and MCP-Crew servers, shared by the test-suite and ``python -m sidecar --demo``.

They are real aiohttp servers on 127.0.0.1 and depend on nothing else in ``sidecar``.
"""

from __future__ import annotations

from .customers import run_customers
from .fake_chatwoot import FakeChatwoot, RecordedRequest
from .fake_crew import FakeCrew
from .payloads import FakeConversation
from .signing import chatwoot_json, sign, verify

__all__ = [
    "FakeChatwoot",
    "FakeConversation",
    "FakeCrew",
    "RecordedRequest",
    "chatwoot_json",
    "run_customers",
    "sign",
    "verify",
]
