"""Provides the ``local`` back-end: crews made of keywords and canned answers in config.yaml.

They let a team test the whole Chatwoot wiring (intake, routing, replies, hand-offs) before
its real crews exist, and they answer the demo's FAQ. No network, so they answer at once.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from sidecar.config import CrewConfig
from sidecar.crew.base import Accepted, Answered, CrewRequest, ProbeResult
from sidecar.queue.routing import fold


@lru_cache(maxsize=1024)
def _word(keyword: str) -> re.Pattern[str]:
    # Whole words (or phrases), accent- and case-insensitive, like the routing rules:
    # "preco" matches "Preço?" but not "apreço".
    return re.compile(r"(?<!\w)" + re.escape(fold(keyword.strip())) + r"(?!\w)")


def first_keyword(text_folded: str, keywords: tuple[str, ...]) -> str | None:
    """The first of ``keywords`` found in the (already folded) text."""
    return next((k for k in keywords if k.strip() and _word(k).search(text_folded)), None)


def envelope_text(envelope: dict[str, Any]) -> str:
    messages = envelope.get("messages") or []
    return "\n".join(str(m.get("content") or "") for m in messages if isinstance(m, dict))


class LocalCrewBackend:
    """Answers from ``answers``/``handoff_keywords``/``fallback_reply``; never fails."""

    kind = "local"
    supports_callback = False

    def __init__(self, crew: CrewConfig) -> None:
        self.crew = crew
        self.breaker_key = f"local:{crew.name}"

    def answer(self, text: str) -> tuple[dict[str, Any], ...]:
        folded = fold(text)
        # A customer asking for a person is handed off even if the message also hits a canned
        # answer: ignoring an explicit request for a human is worse than skipping the FAQ.
        keyword = first_keyword(folded, self.crew.handoff_keywords)
        if keyword is not None:
            action: dict[str, Any] = {"type": "handoff", "category": "customer_request",
                                      "reason": f"customer asked for a human ({keyword})"}
            if self.crew.handoff_message.strip():
                action["message"] = self.crew.handoff_message
            return (action,)
        for answer in self.crew.answers:
            if first_keyword(folded, answer.keywords) is not None:
                return ({"type": "reply", "content": answer.reply},)
        if self.crew.fallback_reply.strip():
            return ({"type": "reply", "content": self.crew.fallback_reply},)
        return ()  # no match and no fallback: say nothing (CONTRACT §5, empty actions)

    async def submit(self, request: CrewRequest) -> Answered | Accepted:
        return Answered(self.answer(envelope_text(request.envelope)))

    async def poll(self, request: CrewRequest) -> Answered | Accepted:
        # Never accepted anything, but a job restored from an older config could ask: answer.
        return Answered(self.answer(envelope_text(request.envelope)))

    async def probe(self) -> ProbeResult:
        return ProbeResult(True, f"local crew ({len(self.crew.answers)} answers)", 0.0)

    async def close(self) -> None:
        return None
