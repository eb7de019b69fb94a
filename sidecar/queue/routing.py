"""Provides routing: local rules, the remote decision engine, and the default crew.

Every decision says where it came from (CONTRACT §5): ``engine`` (the decision engine
chose), ``rules`` (a local rule matched), ``fallback`` (the engine failed or chose an
unknown crew, so the rules decided) or ``default`` (nothing matched).
"""

from __future__ import annotations

import dataclasses
import re
import time
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import aiohttp

from connector_config.team import HANDOFF_CATEGORIES
from sidecar.config import Config, RoutingRule


@dataclass(frozen=True, slots=True)
class Decision:
    crew: str
    source: str
    reason: str
    confidence: float | None = None
    handoff: bool = False
    duration: float = 0.0
    rule: str = ""
    """The matching rule's name (``rule N`` when it has none); empty when no rule matched."""
    rule_index: int | None = None
    """The matching rule's position in ``routing.rules`` (its mode, shadow crew, hand-off team)."""
    category: str = "other"
    """Why the decision engine asked for a human (a hand-off category), when it did."""


@dataclass(frozen=True, slots=True)
class RoutingInput:
    channel: str
    inbox_id: int | None
    text: str
    labels: tuple[str, ...]


def fold(text: str) -> str:
    """Lower-case and strip accents, so "Preço" matches the keyword "preco"."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@lru_cache(maxsize=512)
def _keyword_pattern(keyword: str) -> re.Pattern[str]:
    # Whole words (or phrases): "preco" must not match inside "aprecosamente".
    return re.compile(r"(?<!\w)" + re.escape(fold(keyword)) + r"(?!\w)")


@lru_cache(maxsize=512)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


def keyword_hit(keywords: tuple[str, ...], text: str) -> str | None:
    """The first keyword found in ``text`` as a whole word or phrase (any case, any accents)."""
    if not keywords:
        return None
    folded = fold(text)
    return next((k for k in keywords if _keyword_pattern(k).search(folded)), None)


def rule_matches(rule: RoutingRule, item: RoutingInput) -> str | None:
    """Returns why the rule matches, or None. Every condition the rule sets must hold."""
    reasons = []
    if rule.channel:
        if item.channel not in rule.channel:
            return None
        reasons.append(f"channel={item.channel}")
    if rule.inbox_id:
        if item.inbox_id not in rule.inbox_id:
            return None
        reasons.append(f"inbox_id={item.inbox_id}")
    if rule.labels:
        hit = sorted(set(rule.labels) & set(item.labels))
        if not hit:
            return None
        reasons.append(f"label={hit[0]}")
    if rule.keywords:
        hit_kw = keyword_hit(rule.keywords, item.text)
        if hit_kw is None:
            return None
        reasons.append(f"keyword={hit_kw}")
    if rule.pattern:
        if not _regex(rule.pattern).search(item.text):
            return None
        reasons.append("pattern")
    return ", ".join(reasons) or "catch-all rule"


def rule_label(rule: RoutingRule, index: int) -> str:
    """How analytics and the console name a rule: its ``name``, else its position."""
    return rule.name or f"rule {index + 1}"


def decide_by_rules(config: Config, item: RoutingInput) -> Decision:
    for index, rule in enumerate(config.routing.rules):
        why = rule_matches(rule, item)
        if why is not None:
            label = rule_label(rule, index)
            return Decision(rule.crew, "rules", f"{label} ({why})", rule=label, rule_index=index)
    return Decision(config.routing.default_crew, "default", "no rule matched")


async def decide(
    config: Config,
    session: aiohttp.ClientSession,
    item: RoutingInput,
    *,
    engine_body: dict[str, Any],
) -> Decision:
    """Rules first (their pick is the engine's ``suggested_crew``), then the engine if set."""
    started = time.monotonic()
    local = decide_by_rules(config, item)
    url = config.mcp_crew.decision_engine_url
    if not url:
        return _timed(local, started)
    candidates = list(config.known_crews)
    body = {**engine_body, "candidates": candidates, "suggested_crew": local.crew}
    headers = {"Content-Type": "application/json"}
    if config.mcp_crew.api_key:
        headers["Authorization"] = f"Bearer {config.mcp_crew.api_key}"
    try:
        timeout = aiohttp.ClientTimeout(total=config.mcp_crew.decision_timeout_seconds)
        async with session.post(url, json=body, headers=headers, timeout=timeout, allow_redirects=False) as resp:
            if resp.status != 200:
                return _fallback(local, f"decision engine answered HTTP {resp.status}", started)
            answer = await resp.json(content_type=None)
    except TimeoutError:
        return _fallback(local, f"decision engine timed out after {config.mcp_crew.decision_timeout_seconds:g}s", started)
    except (aiohttp.ClientError, ValueError) as exc:
        return _fallback(local, f"decision engine unreachable ({type(exc).__name__})", started)
    if not isinstance(answer, dict):
        return _fallback(local, "decision engine answer is not an object", started)
    crew = answer.get("crew")
    handoff = answer.get("handoff") is True
    confidence = answer.get("confidence")
    confidence = float(confidence) if isinstance(confidence, int | float) and not isinstance(confidence, bool) else None
    reason = answer.get("reason") if isinstance(answer.get("reason"), str) else ""
    if not handoff and (not isinstance(crew, str) or crew not in candidates):
        return _fallback(local, f"decision engine chose an unknown crew {str(crew)[:40]!r}", started)
    chosen = crew if isinstance(crew, str) and crew else local.crew
    category = answer.get("category")
    # The local rule still speaks for the conversation (mode, shadow crew, team) when the engine
    # agreed with it.
    same = chosen == local.crew
    return Decision(
        chosen, "engine", reason or "decision engine", confidence, handoff, time.monotonic() - started,
        rule=local.rule if same else "", rule_index=local.rule_index if same else None,
        category=category if category in HANDOFF_CATEGORIES else "other",
    )


def _fallback(local: Decision, why: str, started: float) -> Decision:
    return dataclasses.replace(local, source="fallback", reason=f"{why}; {local.source}: {local.reason}",
                               duration=time.monotonic() - started)


def _timed(decision: Decision, started: float) -> Decision:
    return dataclasses.replace(decision, duration=time.monotonic() - started)
