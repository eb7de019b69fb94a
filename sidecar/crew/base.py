"""Provides the crew back-end interface that the queue worker uses.

A back-end takes a request (the envelope) and either answers now (``Answered``) or
says the answer will come later (``Accepted``: by callback or by polling). Failures are
``CrewError``s that say whether trying again can help.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

ACTION_TYPES = ("reply", "note", "handoff", "labels", "resolve")


class CrewRequest:
    """One request to a crew: the stored envelope (the exact bytes every attempt sends)."""

    __slots__ = ("request_id", "crew", "envelope_json", "attempt", "external_id", "_envelope")

    def __init__(self, request_id: str, crew: str, envelope: str | dict[str, Any], attempt: int,
                 external_id: str | None = None) -> None:
        self.request_id = request_id
        self.crew = crew
        self._envelope: dict[str, Any] | None = None
        if isinstance(envelope, dict):  # built in code (tests, tools): stored form made here
            self._envelope = envelope
            envelope = orjson.dumps(envelope).decode()
        self.envelope_json = envelope
        self.attempt = attempt
        self.external_id = external_id
        """Set when polling a run the back-end accepted earlier."""

    @property
    def envelope(self) -> dict[str, Any]:
        """The envelope as a document (for back-ends that do not send it as is)."""
        if self._envelope is None:
            doc = orjson.loads(self.envelope_json) if self.envelope_json else {}
            self._envelope = doc if isinstance(doc, dict) else {}
        return self._envelope


@dataclass(frozen=True, slots=True)
class Answered:
    actions: tuple[dict[str, Any], ...]
    status_code: int | None = None


@dataclass(frozen=True, slots=True)
class Accepted:
    """The crew took the request; the answer comes by callback or by ``poll``."""

    external_id: str
    poll_after: float | None = None
    """Seconds until the next poll; None means wait for a callback."""
    status_code: int | None = None


@dataclass
class CrewError(Exception):
    reason: str
    retryable: bool
    status_code: int | None = None
    retry_after: float | None = None
    counts_against_backend: bool = True
    """False for answers that say nothing about the back-end's health (4xx)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    detail: str
    latency: float | None = None


class CrewBackend(Protocol):
    kind: str
    """``http``, ``mcp``, ``crewai_amp`` or ``local``."""
    breaker_key: str
    """Back-ends sharing a key share a circuit breaker (usually: the same URL)."""
    supports_callback: bool

    async def submit(self, request: CrewRequest) -> Answered | Accepted: ...

    async def poll(self, request: CrewRequest) -> Answered | Accepted: ...

    async def probe(self) -> ProbeResult: ...

    async def close(self) -> None: ...


def parse_answer(raw: bytes | str, what: str) -> Any:
    """A crew's answer body as JSON; anything else is a permanent error (a retry gets the same)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CrewError(f"{what} is not JSON", retryable=False, counts_against_backend=False) from exc


def parse_actions(doc: Any) -> tuple[dict[str, Any], ...]:
    """Validates a reply document's ``actions`` list (CONTRACT §5)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("actions"), list):
        raise CrewError("answer has no actions list", retryable=False, counts_against_backend=False)
    actions = []
    for index, action in enumerate(doc["actions"]):
        if not isinstance(action, dict) or action.get("type") not in ACTION_TYPES:
            raise CrewError(f"action {index} has no valid type", retryable=False, counts_against_backend=False)
        kind = action["type"]
        if kind in ("reply", "note") and not isinstance(action.get("content"), str):
            raise CrewError(f"action {index} ({kind}) needs a string content", retryable=False,
                            counts_against_backend=False)
        if kind == "labels" and not (isinstance(action.get("add"), list)
                                     and all(isinstance(x, str) for x in action["add"])):
            raise CrewError(f"action {index} (labels) needs an add list of strings", retryable=False,
                            counts_against_backend=False)
        actions.append(action)
    return tuple(actions)


def classify_status(status: int, retry_after: float | None, body_hint: str = "") -> CrewError:
    """5xx, 429 and 408 are worth retrying; other 4xx are final."""
    hint = f": {body_hint[:120]}" if body_hint else ""
    if status >= 500 or status in (408, 429):
        return CrewError(f"crew answered HTTP {status}{hint}", retryable=True, status_code=status,
                         retry_after=retry_after)
    return CrewError(f"crew answered HTTP {status}{hint}", retryable=False, status_code=status,
                     counts_against_backend=False)
