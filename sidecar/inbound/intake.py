"""Provides the Chatwoot webhook intake: verify, parse, journal, answer.

The order matters for cost and safety: the signature is checked over the raw bytes first
(a forged or stale delivery costs no JSON parsing and no database work), and a 2xx is
only ever returned after the delivery's row has committed. The answer's status comes from
the payload alone (sidecar.inbound.apply.first_look); the applier derives everything else from the
committed row afterwards, so Chatwoot waits for one INSERT, not for the whole bookkeeping.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.inbound.apply import IntakeSettings, first_look, journal_delivery
from sidecar.inbound.payload import event_label, normalize
from sidecar.inbound.signature import DELIVERY_HEADER, verify_signature
from sidecar.ops.logs import get_logger, log_event
from sidecar.services import Services
from state import StorageUnavailable

log = get_logger()
_MAX_DELIVERY_ID = 100


@dataclass(frozen=True, slots=True)
class IntakeReply:
    status: int
    body: dict[str, Any]


class RateLimitedLog:
    """At most one log line per reason and interval: a flood of forged or broken requests
    must not flood the log (nor cost a disk write each); the next line says how many
    were left out, and the metrics count every one."""

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
    def __init__(self, services: Services) -> None:
        self.svc = services
        self.last_rejection: dict[str, Any] | None = None
        self._rejection_log = RateLimitedLog(per_seconds=1.0)
        self.last_delivery_at: float | None = None

    def settings(self) -> IntakeSettings:
        """What intake needs of the live config, read afresh (config changes apply at once)."""
        config = self.svc.config.current
        p = config.processing
        self_ids = set(self.svc.self_user_ids)
        if config.chatwoot.bot_user_id is not None:
            self_ids.add(config.chatwoot.bot_user_id)
        return IntakeSettings(
            inbox_ids=config.chatwoot.inbox_ids,
            debounce_seconds=p.debounce_seconds,
            debounce_max_seconds=p.debounce_max_seconds,
            self_user_ids=tuple(sorted(self_ids)),
        )

    def _reject(self, status: int, outcome: str, reason: str, delivery_id: str | None) -> IntakeReply:
        now = time.time()
        self.svc.metrics.inc("connector_webhooks_received_total", event="unknown", outcome=outcome)
        self.last_rejection = {"at": now, "status": status, "outcome": outcome, "reason": reason,
                               "delivery_id": delivery_id}
        suppressed = self._rejection_log.admit(reason, now)
        if suppressed is not None:
            log_event(log, "webhook.rejected", level=30, status=status, reason=reason, delivery=delivery_id,
                      suppressed=suppressed or None)
        return IntakeReply(status, {"status": "rejected", "error": reason})

    async def handle(self, body: bytes, headers: Mapping[str, str]) -> IntakeReply:
        started = time.monotonic()
        svc = self.svc
        config = svc.config.current
        delivery_id = (headers.get(DELIVERY_HEADER) or "").strip()[:_MAX_DELIVERY_ID] or None
        check = verify_signature(
            body, headers, config.chatwoot.webhook_secrets, now=time.time(),
            tolerance=config.chatwoot.signature_tolerance_seconds, allow_unsigned=config.chatwoot.allow_unsigned,
        )
        if not check.ok:
            return self._reject(401, "rejected_signature", check.reason, delivery_id)
        try:
            text = body.decode("utf-8")
            payload = json.loads(text)
        except (UnicodeDecodeError, ValueError, RecursionError):
            # RecursionError: json.loads recurses once per nesting level ("[[[[..." deep bodies).
            return self._reject(400, "rejected_malformed", "body is not valid UTF-8 JSON", delivery_id)
        if not isinstance(payload, dict):
            return self._reject(400, "rejected_malformed", "body is not a JSON object", delivery_id)

        inbound = normalize(payload)
        now = time.time()
        try:
            fresh = await svc.writer.transact(journal_delivery, inbound, body_text=text, delivery_id=delivery_id,
                                              now=now)
        except StorageUnavailable as exc:
            svc.metrics.inc("connector_webhooks_received_total", event=event_label(inbound.event),
                            outcome="storage_unavailable")
            log_event(log, "webhook.storage_unavailable", level=40, delivery=delivery_id, error=str(exc))
            return IntakeReply(503, {"status": "unavailable", "error": "storage unavailable, not accepted"})

        self.last_delivery_at = now
        svc.metrics.observe("connector_intake_duration_seconds", time.monotonic() - started)
        if check.unsigned:
            log_event(log, "webhook.unsigned", level=30, delivery=delivery_id)
        if not fresh:
            # Logged here: a duplicate never reaches the applier, which logs every other delivery.
            svc.metrics.inc("connector_webhooks_received_total", event=event_label(inbound.event),
                            outcome="duplicate")
            log_event(log, "webhook.received", delivery=delivery_id, event=event_label(inbound.event),
                      outcome="duplicate", reason="already received")
            return IntakeReply(200, {"status": "duplicate", "reason": "already received"})
        svc.journal_wake.set()
        outcome, reason = first_look(inbound, config.chatwoot.inbox_ids)
        return IntakeReply(200, {"status": outcome, "reason": reason})
