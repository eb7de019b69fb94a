"""Provides HandoffWatchdog: reminds the team of hand-offs no human has answered in time.

Runs in every worker process. Each reminder is claimed in the same transaction that queues it
(``handoffs.mark_reminded`` succeeds once), so several watchdogs never post it twice. The
reminder itself is a ``notice`` job: it goes through the reply poster's exactly-once steps,
retries and dead letters like any crew answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from connector_config import Config, HandoffConfig
from sidecar.ops.metrics import Metrics
from sidecar.ops.outcomes import record
from state import StateError, StateService, Tx

log = logging.getLogger("sidecar.handoff_watchdog")

HANDOFFS_WAITING = "connector_handoffs_waiting"
LONGEST_SLEEP = 30.0
"""Also with nothing due, look again this often: hand-offs recorded meanwhile start new clocks."""


def reminder_actions(handoff_age: float, category: str, reason: str,
                     escalation_team_id: int | None) -> list[dict[str, Any]]:
    minutes = max(1, round(handoff_age / 60))
    text = (f"Reminder: this conversation was handed to a human {minutes} min ago ({category}: {reason}) "
            "and no agent has replied yet.")
    if escalation_team_id is None:
        return [{"type": "note", "content": text}]
    return [{"type": "note", "content": f"{text} Escalated to team {escalation_team_id}."},
            {"type": "assign", "team_id": escalation_team_id}]


def queue_reminders(tx: Tx, settings: HandoffConfig, now: float) -> tuple[int, int, float | None]:
    """Queues the reminders that are due. Returns (queued, still waiting, oldest waiting clock)."""
    after = settings.remind_after_minutes * 60
    queued = 0
    for handoff in tx.handoffs.due_reminders(now - after):
        if not tx.handoffs.mark_reminded(handoff.id, now, escalated=settings.escalation_team_id is not None):
            continue  # another watchdog took it
        conv = tx.conversations.get(handoff.account_id, handoff.conversation_id)
        if conv is None or conv.status == "resolved":
            continue  # nobody is waiting any more
        tx.jobs.add_notice(handoff.account_id, handoff.conversation_id,
                           reminder_actions(now - handoff.waiting_since, handoff.category, handoff.reason,
                                            settings.escalation_team_id),
                           "hand-off reminder", now)
        record(tx, "reminder", account_id=handoff.account_id, conversation_id=handoff.conversation_id,
               crew=handoff.crew, rule=handoff.rule, now=now, detail=handoff.category)
        queued += 1
    return queued, tx.handoffs.waiting(), tx.handoffs.next_waiting_since()


class HandoffWatchdog:
    def __init__(self, *, config: Callable[[], Config], state: StateService, metrics: Metrics,
                 queued: Callable[[], None]) -> None:
        self._config = config
        self._state = state
        self._metrics = metrics
        self._queued = queued
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            sleep = LONGEST_SLEEP
            settings = self._config().handoff
            if settings.remind_after_minutes > 0:
                with contextlib.suppress(StateError):  # the state is down: the next round tries again
                    sleep = await self.check(settings)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(sleep):
                    await self._wake.wait()
            self._wake.clear()

    async def check(self, settings: HandoffConfig) -> float:
        """One round; returns how long to sleep until the next reminder can be due."""
        now = time.time()
        queued, waiting, oldest = await self._state.write(lambda tx: queue_reminders(tx, settings, now))
        self._metrics.set_gauge(HANDOFFS_WAITING, waiting)
        if queued:
            log.info("handoff.reminders_queued count=%d", queued)
            self._queued()
        after = settings.remind_after_minutes * 60
        # Short reminder delays (tests, demos) are looked at often enough to be on time.
        longest = min(LONGEST_SLEEP, max(0.2, after / 4))
        if oldest is None:
            return longest
        return min(longest, max(0.05, oldest + after - time.time()))
