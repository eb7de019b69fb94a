"""Provides the Chatwoot webhook intake: verify, parse, journal, answer.

The order matters for cost and safety: the signature is checked over the raw bytes first (a
forged or stale delivery costs no JSON parsing and no database work), and a 2xx is only ever
returned after the delivery's row has committed (synchronous=FULL: Chatwoot never resends). The
answer comes from a peek at the payload (sidecar.inbound.payload.peek); the journal applier
derives everything else from the committed row afterwards, so Chatwoot waits for one INSERT
sharing a group commit, not for the whole bookkeeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.config import Config
from sidecar.inbound.apply import first_look, journal
from sidecar.inbound.payload import Peek, event_label, parse_json, peek
from sidecar.inbound.signature import DELIVERY_HEADER, verify_signature
from sidecar.ops.logs import get_logger, log_event
from sidecar.ops.metrics import Metrics
from state import StateService, StorageUnavailable
from state.sql import dumps, loads

log = get_logger()
_MAX_DELIVERY_ID = 100
_BODY_CACHE_SIZE = 512


@dataclass(frozen=True, slots=True)
class IntakeReply:
    status: int
    body: bytes
    """The JSON answer, already encoded."""

    @property
    def document(self) -> dict[str, Any]:
        return loads(self.body)


class RateLimitedLog:
    """At most one log line per reason and interval: a flood of forged or broken requests must
    not flood the log (nor cost a disk write each); the next line says how many were left out,
    and the metrics count every one."""

    def __init__(self, per_seconds: float) -> None:
        self.per_seconds = per_seconds
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def admit(self, key: str, now: float) -> int | None:
        """None: skip this line; otherwise log it, noting this many left out since the last."""
        if now - self._last.get(key, float("-inf")) < self.per_seconds:
            self._skipped[key] = self._skipped.get(key, 0) + 1
            return None
        if len(self._last) > 64:  # reasons are our own texts; bound the memory anyway
            self._last.clear()
        self._last[key] = now
        return self._skipped.pop(key, 0)


class WebhookIntake:
    """Answers ``POST /webhook/chatwoot`` (the route hands it the raw body and headers)."""

    def __init__(self, config: Callable[[], Config], state: StateService, metrics: Metrics,
                 journaled: Callable[[], None]) -> None:
        self._config = config
        self._state = state
        self._metrics = metrics
        self._journaled = journaled
        """Called after a fresh delivery committed (wakes the journal applier)."""
        self.last_rejection: dict[str, Any] | None = None
        self.last_delivery_at: float | None = None
        self._rejection_log = RateLimitedLog(per_seconds=1.0)
        self._bodies: dict[tuple[str, str], bytes] = {}

    def _body(self, status: str, reason: str) -> bytes:
        """The encoded answer; the few distinct answers are encoded once."""
        key = (status, reason)
        body = self._bodies.get(key)
        if body is None:
            body = dumps({"status": status, "reason": reason}).encode()
            if len(self._bodies) < _BODY_CACHE_SIZE:
                self._bodies[key] = body
        return body

    def _reject(self, status: int, outcome: str, reason: str, delivery_id: str | None) -> IntakeReply:
        now = time.time()
        self._metrics.inc("connector_webhooks_received_total", event="unknown", outcome=outcome)
        self.last_rejection = {"at": now, "status": status, "outcome": outcome, "reason": reason,
                               "delivery_id": delivery_id}
        suppressed = self._rejection_log.admit(reason, now)
        if suppressed is not None:
            log_event(log, "webhook.rejected", level=30, status=status, reason=reason, delivery=delivery_id,
                      suppressed=suppressed or None)
        return IntakeReply(status, dumps({"status": "rejected", "error": reason}).encode())

    async def handle(self, body: bytes, headers: Mapping[str, str]) -> IntakeReply:
        started = time.monotonic()
        config = self._config()
        delivery_id = (headers.get(DELIVERY_HEADER) or "").strip()[:_MAX_DELIVERY_ID] or None
        now = time.time()
        check = verify_signature(
            body, headers, config.chatwoot.webhook_secrets, now=now,
            tolerance=config.chatwoot.signature_tolerance_seconds, allow_unsigned=config.chatwoot.allow_unsigned)
        if not check.ok:
            return self._reject(401, "rejected_signature", check.reason, delivery_id)
        try:
            text = body.decode("utf-8")
            payload = parse_json(body)
        except (UnicodeDecodeError, ValueError, RecursionError):
            # RecursionError: a JSON parser may recurse once per nesting level ("[[[[...").
            return self._reject(400, "rejected_malformed", "body is not valid UTF-8 JSON", delivery_id)
        if not isinstance(payload, dict):
            return self._reject(400, "rejected_malformed", "body is not a JSON object", delivery_id)

        view: Peek = peek(payload)
        try:
            fresh = await self._state.write(journal, view, body_text=text, delivery_id=delivery_id, now=now,
                                            durable=True, urgent=True)
        except StorageUnavailable as exc:
            self._metrics.inc("connector_webhooks_received_total", event=event_label(view.event),
                              outcome="storage_unavailable")
            log_event(log, "webhook.storage_unavailable", level=40, delivery=delivery_id, error=str(exc))
            return IntakeReply(503, b'{"status":"unavailable","error":"storage unavailable, not accepted"}')

        self.last_delivery_at = now
        self._metrics.observe("connector_intake_duration_seconds", time.monotonic() - started)
        if check.unsigned:
            log_event(log, "webhook.unsigned", level=30, delivery=delivery_id)
        if not fresh:
            # Logged here: a duplicate never reaches the applier, which logs every other delivery.
            self._metrics.inc("connector_webhooks_received_total", event=event_label(view.event), outcome="duplicate")
            log_event(log, "webhook.received", delivery=delivery_id, event=event_label(view.event),
                      outcome="duplicate", reason="already received")
            return IntakeReply(200, self._body("duplicate", "already received"))
        self._journaled()
        outcome, reason = first_look(view, config.chatwoot.inbox_ids)
        return IntakeReply(200, self._body(outcome, reason))
