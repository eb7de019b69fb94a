"""Supervisor: a background loop that fails unexpectedly is restarted, logged, counted and
reported; and in a running sidecar, an applier that cannot apply shows in /health until it can."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid

import pytest

from sidecar.ops.logs import REDACTOR
from sidecar.ops.metrics import Metrics
from sidecar.ops.supervise import RECENT_SECONDS, WARN_SECONDS, Supervisor
from simulators import FakeChatwoot, chatwoot_json, sign
from simulators.payloads import message_event
from tests.harness import SECRET, InProcessSidecar
from tests.waiting import wait_until


def _restarts(metrics: Metrics, task: str) -> float:
    return metrics.pending("connector_background_restarts_total", task=task)


async def test_a_failing_loop_is_restarted_until_it_ends() -> None:
    metrics, now = Metrics(), [1000.0]
    supervisor = Supervisor(metrics, first_pause=0.0, clock=lambda: now[0])
    calls = 0

    async def loop() -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise RuntimeError(f"boom {calls}")

    await supervisor.keep_running("applier", loop)
    assert calls == 3
    assert supervisor.crashes["applier"].count == 2
    assert supervisor.crashes["applier"].last_error == "RuntimeError: boom 2"
    assert _restarts(metrics, "applier") == 2
    assert supervisor.recently_crashed()
    [warning] = supervisor.warnings()
    assert "applier failed 2 time(s)" in warning and "boom 2" in warning
    now[0] += RECENT_SECONDS + 1
    assert not supervisor.recently_crashed()  # recovered: no longer degraded, still listed
    assert list(supervisor.warnings())
    now[0] += WARN_SECONDS
    assert not list(supervisor.warnings())


async def test_cancelling_a_supervised_loop_is_not_a_crash() -> None:
    supervisor = Supervisor(Metrics(), first_pause=0.0)
    started = asyncio.Event()

    async def loop() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(supervisor.keep_running("worker", loop))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert supervisor.crashes == {}


@pytest.mark.sqlite_only  # SQLite itself; tests/postgres has the PostgreSQL side
async def test_an_applier_that_cannot_apply_shows_in_health_until_it_can(
    sidecar: InProcessSidecar, chatwoot: FakeChatwoot
) -> None:
    """Acknowledged webhooks that cannot be applied must not hide behind an ``ok``: here an
    outside change to the database (a trigger refusing updates of deliveries) stops the
    applier until it is removed; /health is degraded meanwhile and says why."""
    db = sqlite3.connect(sidecar.db_path, timeout=10)
    db.execute("CREATE TRIGGER hold_deliveries BEFORE UPDATE ON deliveries "
               "BEGIN SELECT RAISE(ABORT, 'deliveries are read-only for now'); END")
    db.commit()
    conv = chatwoot.open_conversation("whatsapp")
    body = chatwoot_json(message_event(conv, chatwoot.world.customer_message(conv, "oi")))
    stamp, delivery = int(time.time()), str(uuid.uuid4())
    headers = {"Content-Type": "application/json", "X-Chatwoot-Delivery": delivery,
               "X-Chatwoot-Timestamp": str(stamp), "X-Chatwoot-Signature": sign(body, SECRET, stamp)}
    status, _, _ = await sidecar.client.post("/webhook/chatwoot", data=body, headers=headers)
    assert status == 200  # journaled: acknowledged whatever happens next

    async def health() -> dict:
        return (await sidecar.client.get("/health"))[1]

    doc = await wait_until(health, until=lambda d: d["checks"]["queue"]["status"] == "degraded",
                           what="the stuck journal in /health")
    assert doc["status"] == "degraded"
    queue = doc["checks"]["queue"]
    assert queue["unapplied"] == 1 and queue["oldest_unapplied_age"] >= 0
    assert "cannot be applied: deliveries are read-only for now" in queue["detail"]

    db.execute("DROP TRIGGER hold_deliveries")
    db.commit()
    db.close()
    assert (await sidecar.outcome(delivery))[0] == "accepted"
    doc = await wait_until(health, until=lambda d: d["checks"]["queue"]["status"] == "ok",
                           what="the journal applied")
    assert doc["checks"]["queue"]["unapplied"] == 0
    assert "detail" not in doc["checks"]["queue"]


async def test_a_secret_in_the_error_never_reaches_the_warnings() -> None:
    """The error text goes into /health and the console, which the log redactor does not see."""
    secret = "tok-9f8e7d6c5b4a"
    REDACTOR.set_secrets([secret])
    try:
        supervisor = Supervisor(Metrics(), first_pause=0.0)
        calls = 0

        async def loop() -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError(f"GET https://crew.example/api?key={secret} failed")

        await supervisor.keep_running("queue-worker", loop)
        text = " ".join(supervisor.warnings())
        assert "key=****" in text and secret not in text
    finally:
        REDACTOR.set_secrets([])
