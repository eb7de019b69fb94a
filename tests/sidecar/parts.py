"""Provides the sidecar's components wired by hand, for tests of one component at a time.

What :class:`sidecar.runtime.Runtime` builds, minus the HTTP server and the background loops:
the live config, the real state service (a temporary SQLite file, or a fresh PostgreSQL database
with ``--backend=postgres``), one aiohttp session, the
Chatwoot client, the crew registry and the reply poster, pointed at fake servers on 127.0.0.1.
A test then runs the one component it is about (the queue worker, the reply poster, ...)
against them; nothing is patched.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from sidecar.config import Config, config_from_mapping
from sidecar.config.holder import ConfigHolder
from sidecar.crew.breaker import BreakerBoard, BreakerSettings
from sidecar.crew.registry import CrewRegistry
from sidecar.inbound.apply import ApplySettings, apply_pending, journal
from sidecar.inbound.payload import peek
from sidecar.ops.metrics import Metrics
from sidecar.ops.slots import Slots
from sidecar.outbound.chatwoot import ChatwootClient
from sidecar.outbound.http11 import Http11
from sidecar.outbound.replies import ReplyPoster
from sidecar.queue.pacing import Pacing
from sidecar.queue.worker import QueueWorker
from simulators import FakeChatwoot, FakeConversation, FakeCrew
from simulators.payloads import message_event
from state import Job, StateService, open_database, open_service
from tests.harness import sidecar_config

WORKER = "worker-under-test"


@dataclass
class Parts:
    """The wired components (see the module docs)."""

    holder: ConfigHolder
    state: StateService
    db_path: str
    metrics: Metrics
    session: aiohttp.ClientSession
    http: Http11
    chatwoot: ChatwootClient
    crews: CrewRegistry
    breakers: BreakerBoard
    slots: Slots
    pacing: Pacing
    poster: ReplyPoster
    finished: list[None] = field(default_factory=list)
    """One entry per job the poster finished (its ``finished`` callback)."""

    def worker(self, worker_id: str = WORKER) -> QueueWorker:
        return QueueWorker(config=self.holder, state=self.state, crews=self.crews, breakers=self.breakers,
                           slots=self.slots, poster=self.poster, chatwoot=self.chatwoot, session=self.session,
                           metrics=self.metrics, pacing=self.pacing, worker_id=worker_id)

    def query(self, fn: Any) -> Any:
        """A read from a separate read-only connection (what another process would see)."""
        db = open_database(self.db_path, readonly=True)
        try:
            return db.read(fn)
        finally:
            db.close()

    def job(self, job_id: int) -> Job:
        return self.query(lambda tx: tx.jobs.get(job_id))


def build_config(tmp_path: Path, chatwoot: FakeChatwoot, crew: FakeCrew, overrides: dict[str, Any] | None = None
                 ) -> Config:
    """The same config a test's sidecar gets (tests.harness.sidecar_config), as a Config."""
    raw = sidecar_config(tmp_path, chatwoot_url=chatwoot.url, crew_url=crew.crew_url, chatwoot_token=chatwoot.token,
                         crew_key=crew.api_key, overrides=overrides)
    return config_from_mapping(raw, env={})


@asynccontextmanager
async def wired(config: Config, *, worker_id: str = WORKER) -> AsyncIterator[Parts]:
    """Builds the components for ``config`` and closes them afterwards."""
    holder = ConfigHolder(config)
    state = open_service(config.state.location)  # SQLite, or PostgreSQL with --backend=postgres
    metrics = Metrics()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    http = Http11()
    slots = Slots()
    chatwoot = ChatwootClient(session, holder, metrics, slots, http)
    crews = CrewRegistry(session, http)
    crews.refresh(config)

    def breaker_settings() -> BreakerSettings:
        p = holder.current.processing
        return BreakerSettings(p.breaker_failure_ratio, p.breaker_min_requests, p.breaker_open_seconds)

    finished: list[None] = []
    poster = ReplyPoster(config=holder, state=state, chatwoot=chatwoot, metrics=metrics, worker_id=worker_id,
                         self_user_ids=set(), finished=lambda: finished.append(None))
    parts = Parts(holder=holder, state=state, db_path=config.state.location, metrics=metrics, session=session,
                  http=http, chatwoot=chatwoot, crews=crews, breakers=BreakerBoard(breaker_settings), slots=slots,
                  pacing=Pacing(), poster=poster, finished=finished)
    try:
        yield parts
    finally:
        await crews.close()
        await http.close()
        await session.close()
        state.close()


async def customer_writes(parts: Parts, chatwoot: FakeChatwoot, conv: FakeConversation, text: str) -> int:
    """A customer message as the intake and the applier would store it (journal, then apply):
    returns the job it queued, due now."""
    body = json.dumps(message_event(conv, chatwoot.world.customer_message(conv, text)))
    settings = ApplySettings(inbox_ids=(), debounce_seconds=0.0, debounce_max_seconds=0.0, self_user_ids=())

    def write(tx: Any) -> int:
        journal(tx, peek(json.loads(body)), body_text=body, delivery_id=str(uuid.uuid4()), now=time.time())
        [applied] = apply_pending(tx, settings, limit=10)
        assert applied.result.job_id is not None, applied.result
        return applied.result.job_id

    return await parts.state.write(write)
