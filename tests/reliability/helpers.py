"""Helpers for the fault suite: signed deliveries over raw HTTP and database facts."""

from __future__ import annotations

import statistics
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from simulators import FakeChatwoot, chatwoot_json
from simulators.payloads import FakeConversation, message_event
from simulators.signing import webhook_headers
from tests.harness import SECRET, SidecarBase


def signed_delivery(chatwoot: FakeChatwoot, conv: FakeConversation, text: str,
                    delivery_id: str | None = None) -> tuple[str, bytes, dict[str, str]]:
    """A customer message as Chatwoot would deliver it: (delivery id, body, headers)."""
    msg = chatwoot.world.customer_message(conv, text, None)
    body = chatwoot_json(message_event(conv, msg, "message_created"))
    delivery = delivery_id or str(uuid.uuid4())
    return delivery, body, webhook_headers(body, delivery_id=delivery, secret=SECRET, timestamp=int(time.time()))


def sign_raw(body: bytes, delivery_id: str | None = None, content_type: str = "application/json") -> dict[str, str]:
    headers = webhook_headers(body, delivery_id=delivery_id or str(uuid.uuid4()), secret=SECRET,
                              timestamp=int(time.time()))
    headers["Content-Type"] = content_type
    return headers


@dataclass
class Ledger:
    """What every delivery got: an HTTP status, or the connection error instead of one."""

    statuses: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)

    def ok(self) -> set[str]:
        return {d for d, s in self.statuses.items() if 200 <= s < 300}


async def post_delivery(session: aiohttp.ClientSession, url: str, delivery: str, body: bytes,
                        headers: dict[str, str], ledger: Ledger) -> int | None:
    started = time.monotonic()
    try:
        async with session.post(url, data=body, headers=headers) as resp:
            await resp.read()
            ledger.statuses[delivery] = resp.status
            ledger.latencies.append(time.monotonic() - started)
            return resp.status
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        ledger.errors[delivery] = type(exc).__name__
        return None


def fresh_session(timeout: float = 30.0) -> aiohttp.ClientSession:
    """One connection per request, so a refused connect is never confused with a reset."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True),
                                 timeout=aiohttp.ClientTimeout(total=timeout))


# -- database facts (read-only connection, like the console) ---------------------------------

def rows(proc: SidecarBase, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    return proc.query(lambda tx: tx.sql.all(sql, params))


def scalar(proc: SidecarBase, sql: str, params: tuple[Any, ...] = ()) -> Any:
    found = rows(proc, sql, params)
    return next(iter(found[0].values())) if found else None


def stored_delivery_ids(proc: SidecarBase) -> set[str]:
    return {r["delivery_id"] for r in rows(proc, "SELECT delivery_id FROM deliveries WHERE delivery_id IS NOT NULL")}


def jobs(proc: SidecarBase, conversation_id: int | None = None) -> list[dict[str, Any]]:
    if conversation_id is None:
        return rows(proc, "SELECT * FROM jobs ORDER BY id")
    return rows(proc, "SELECT * FROM jobs WHERE conversation_id=? ORDER BY id", (conversation_id,))


def open_jobs(proc: SidecarBase) -> int:
    """Work not finished yet: open jobs, and acknowledged deliveries not applied yet (they become
    jobs once applied, so "no open job" alone could be true before the work even exists)."""
    # The journal first, then the jobs: each statement sees the latest commits (no snapshot
    # spans them), and a delivery applied between two reads must be counted as a job, not
    # missed (jobs first could read "no job yet", then "all applied": a false zero).
    backlog, stats = proc.query(lambda s: (s.journal.backlog(), s.jobs.stats()))
    return stats.pending + stats.in_flight + stats.waiting + backlog.unapplied


def crew_keys(crew_requests: list[Any]) -> list[str]:
    return [r.headers.get("Idempotency-Key", "") for r in crew_requests if r.kind == "crew"]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


async def health(proc: SidecarBase) -> tuple[int, dict[str, Any]]:
    status, doc, _ = await proc.client.get("/health")
    return status, doc if isinstance(doc, dict) else {}


def breaker_states(doc: dict[str, Any]) -> dict[str, str] | None:
    """``checks.backends.<name>.breaker.state`` from /health or the kv snapshot (None: not built yet)."""
    backends = (doc.get("checks") or {}).get("backends") if isinstance(doc, dict) else None
    if not isinstance(backends, dict):
        return None
    states = {}
    for name, entry in backends.items():
        breaker = entry.get("breaker") if isinstance(entry, dict) else None
        if isinstance(breaker, dict) and "state" in breaker:
            states[name] = breaker["state"]
    return states or None
