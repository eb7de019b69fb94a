"""Provides the Chatwoot webhook intake: verify, parse, commit, answer.

The order matters for cost and safety: the signature is checked over the raw bytes first
(a forged or stale delivery costs no JSON parsing and no database work), and a 2xx is
only ever returned after the delivery's transaction has committed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.context import Services
from sidecar.intake import IntakeResult, IntakeSettings, record_delivery
from sidecar.logs import get_logger, log_event
from sidecar.normalize import KNOWN_EVENTS, normalize
from sidecar.signature import DELIVERY_HEADER, verify_signature
from state import StorageUnavailable

log = get_logger()
_MAX_DELIVERY_ID = 100


@dataclass(frozen=True, slots=True)
class IntakeReply:
    status: int
    body: dict[str, Any]


class WebhookIntake:
    def __init__(self, services: Services) -> None:
        self.svc = services
        self.last_rejection: dict[str, Any] | None = None
        self.last_delivery_at: float | None = None

    def _settings(self) -> IntakeSettings:
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
        self.svc.metrics.inc("connector_webhooks_received_total", event="unknown", outcome=outcome)
        self.last_rejection = {"at": time.time(), "status": status, "outcome": outcome, "reason": reason,
                               "delivery_id": delivery_id}
        log_event(log, "webhook.rejected", level=30, status=status, reason=reason, delivery=delivery_id)
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
            result: IntakeResult = await svc.writer.transact(
                record_delivery, inbound, body_text=text, delivery_id=delivery_id, now=now,
                settings=self._settings(),
            )
        except StorageUnavailable as exc:
            svc.metrics.inc("connector_webhooks_received_total", event=_event_label(inbound.event),
                            outcome="storage_unavailable")
            log_event(log, "webhook.storage_unavailable", level=40, delivery=delivery_id, error=str(exc))
            return IntakeReply(503, {"status": "unavailable", "error": "storage unavailable, not accepted"})

        self.last_delivery_at = now
        elapsed = time.monotonic() - started
        svc.metrics.inc("connector_webhooks_received_total", event=_event_label(inbound.event),
                        outcome=result.outcome)
        svc.metrics.observe("connector_intake_duration_seconds", elapsed)
        if result.job_id is not None or result.cancelled_jobs:
            svc.wake.set()
        log_event(
            log, "webhook.received", delivery=delivery_id, event=_event_label(inbound.event), outcome=result.outcome,
            reason=result.reason, conversation=_conv(result), job=result.job_id,
            unsigned=True if check.unsigned else None, ms=round(elapsed * 1000, 2),
        )
        return IntakeReply(200, {"status": result.outcome, "reason": result.reason})


def _event_label(event: str) -> str:
    """Event names come from the sender: unknown ones are folded into one label, so a
    hostile body can neither blow up metric cardinality nor write a huge log field."""
    if event in KNOWN_EVENTS:
        return event
    return "unknown" if not event else "other"


def _conv(result: IntakeResult) -> str | None:
    if result.account_id is None or result.conversation_id is None:
        return None
    return f"{result.account_id}/{result.conversation_id}"
