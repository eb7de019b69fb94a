"""Provides Runtime: everything the sidecar runs, built from the config and wired together.

The app's listeners open, start, stop and close it (sidecar.app); a test can own one itself and
hand it to ``create_app`` so requests through sanic-testing do not restart it. Components get
only what they use (the live config as a callable, the state service, a client), never a bag of
everything.

The path of a webhook: ``intake`` journals it and wakes the ``applier``; the applier turns the
journal into conversation state and queued jobs and wakes the ``worker``; the worker claims,
routes and asks the crew, and hands the answer to the ``poster``, which applies it in Chatwoot.
Around them: ``health`` (probes and the /health document), ``metrics`` (flushed every second),
``config_manager`` (POST /config and hand edits), ``retention`` (old rows pruned, space given back)
and ``search_index`` (the console filter's index), and the ``supervisor`` that restarts a loop
that failed in a way nobody foresaw.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
import time
import uuid
from collections.abc import Awaitable
from typing import Any

import aiohttp

from sidecar import __version__
from sidecar.config import Config
from sidecar.config.holder import ConfigHolder
from sidecar.config.live import ConfigManager
from sidecar.crew.breaker import BreakerBoard, BreakerSettings
from sidecar.crew.registry import CrewRegistry
from sidecar.inbound.apply import ApplySettings
from sidecar.inbound.intake import WebhookIntake
from sidecar.inbound.journal_applier import JournalApplier
from sidecar.ops.health import HealthMonitor
from sidecar.ops.logs import get_logger, log_event
from sidecar.ops.metrics import Metrics
from sidecar.ops.retention import RetentionLoop
from sidecar.ops.search_index import SearchIndexer
from sidecar.ops.slots import Slots
from sidecar.ops.supervise import Supervisor
from sidecar.outbound.chatwoot import ChatwootClient
from sidecar.outbound.http11 import Http11
from sidecar.outbound.replies import ReplyPoster
from sidecar.queue.crew_step import store_async_answer
from sidecar.queue.handoff_watchdog import HandoffWatchdog
from sidecar.queue.pacing import Pacing
from sidecar.queue.worker import QueueWorker
from state import StateError, StateService, StorageUnavailable, Tx, open_service
from state.vocabulary import PASSIVE_MODES, SELF_USER_IDS

log = get_logger()
FLUSH_SECONDS = 1.0
"""How often metric increments are added to the stored totals."""
BEAT_SECONDS = 2.0
"""How often this process writes its row in the processes table (crew calls in flight)."""
WATCH_SECONDS = 0.02
"""How often a queue worker looks whether another process committed (multi-process mode): the
other processes' webhooks and callbacks reach it at most this late."""


def make_process_id() -> str:
    """Identifies this process's leases and its row (fencing: a stale worker cannot complete a job)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def open_state(config: Config) -> StateService:
    """The state service: PostgreSQL at ``state.database_url`` when set, else SQLite at ``state.path``."""
    return open_service(config.state.location, pool_size=config.state.pool_size)


def shared_by_replicas(state: StateService) -> bool:
    """Whether other sidecars (replicas, other machines) may commit to this state: PostgreSQL."""
    return state.kind == "postgresql"


def raise_open_file_limit() -> int:
    """Every crew call in flight is a socket: lift the soft limit on open files to the hard one."""
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 1 << 20, hard))
        return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return 0


class Runtime:
    """The sidecar's components and background loops (``role``: ``all``, ``intake`` or ``worker``)."""

    def __init__(self, config: Config, *, config_path: str | None = None, role: str = "all") -> None:
        self.config = ConfigHolder(config)
        self.config_path = config_path
        self.role = role
        self.process_id = make_process_id()
        self.started_at = time.time()
        self.metrics = Metrics()
        self.metrics_lock = asyncio.Lock()
        """Held by a flush from taking the increments until they are committed, and by an
        exposition from reading the stored totals until it added the pending increments: a
        scrape during a flush would otherwise miss what is being flushed (a counter going down)."""
        self.pacing = Pacing()
        self.supervisor = Supervisor(self.metrics)
        self.slots = Slots()
        self.breakers = BreakerBoard(self._breaker_settings)
        self.self_user_ids: set[int] = set()
        """Chatwoot user ids the sidecar posts as (learned from create answers; persisted)."""
        self._saved_user_ids: list[int] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._opened = False
        self._started = False

    # -- what components read ------------------------------------------------------------------
    def _breaker_settings(self) -> BreakerSettings:
        p = self.config.current.processing
        return BreakerSettings(p.breaker_failure_ratio, p.breaker_min_requests, p.breaker_open_seconds)

    def apply_settings(self) -> ApplySettings:
        """What applying deliveries needs of the live config, read afresh for every batch."""
        config = self.config.current
        ids = set(self.self_user_ids)
        if config.chatwoot.bot_user_id is not None:
            ids.add(config.chatwoot.bot_user_id)
        passive = PASSIVE_MODES
        return ApplySettings(inbox_ids=config.chatwoot.inbox_ids, debounce_seconds=config.processing.debounce_seconds,
                             debounce_max_seconds=config.processing.debounce_max_seconds,
                             self_user_ids=tuple(sorted(ids)),
                             passive_everywhere=config.routing.mode in passive
                             or any(rule.mode in passive for rule in config.routing.rules),
                             passive_inboxes=frozenset(i for i, inbox in config.inboxes.items() if inbox.mode in passive))

    @property
    def runs_worker(self) -> bool:
        return self.role in ("all", "worker") and self.config.current.processing.workers_enabled

    # -- life cycle ----------------------------------------------------------------------------------
    async def open(self) -> None:
        """Opens the state and the HTTP session and builds every component (idempotent)."""
        if self._opened:
            return
        config = self.config.current
        raise_open_file_limit()
        self.state: StateService = await asyncio.to_thread(open_state, config)
        # One session for every outbound call. The pool never makes a call wait (no limit): calls
        # in flight are bounded per back-end by Slots *before* their timeout starts.
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=60, sock_connect=5),
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=30),
        )
        # The two calls every message makes (crew, Chatwoot) go through a lean keep-alive client.
        self.http = Http11()
        self.crews = CrewRegistry(self.session, self.http)
        self.crews.refresh(config)
        self.chatwoot = ChatwootClient(self.session, self.config, self.metrics, self.slots, self.http)
        known = await self.state.read(lambda tx: tx.documents.get(SELF_USER_IDS))
        if isinstance(known, list):
            self.self_user_ids.update(x for x in known if isinstance(x, int))
            self._saved_user_ids = sorted(self.self_user_ids)
        self.worker: QueueWorker | None = None
        self.applier = JournalApplier(self.state, self.apply_settings, self.metrics, self.pacing,
                                      self.work_queued)
        self.intake = WebhookIntake(self.config, self.state, self.metrics, self.applier.wake)
        self.poster = ReplyPoster(config=self.config, state=self.state, chatwoot=self.chatwoot, metrics=self.metrics,
                                  worker_id=self.process_id, self_user_ids=self.self_user_ids,
                                  finished=self.work_queued)
        self.config_manager = ConfigManager(self.state, self.metrics, self.config, self.config_path)
        manager, supervisor = self.config_manager, self.supervisor
        self.health = HealthMonitor(
            config=self.config, state=self.state, chatwoot=self.chatwoot, crews=self.crews, breakers=self.breakers,
            session=self.session, warnings=lambda: [*manager.warnings(), *supervisor.warnings()],
            config_problem=manager.problem, crashing=supervisor.recently_crashed,
            journal_problem=lambda: self.applier.problem, process_id=self.process_id)
        manager.listeners.append(self.health.probe_soon)  # new URLs or tokens: probe again now
        self.retention = RetentionLoop(config=self.config, state=self.state, metrics=self.metrics,
                                       pacing=self.pacing, owner=self.process_id)
        self.search_index = SearchIndexer(state=self.state, pacing=self.pacing, owner=self.process_id)
        self._opened = True

    def work_queued(self) -> None:
        if self.worker is not None:
            self.worker.wake()

    async def store_crew_answer(self, request_id: str, actions: tuple[dict[str, Any], ...]) -> str:
        """A crew's answer that came back on its own (a callback): shaped and stored once.

        Returns ``applied``, ``duplicate`` or ``unknown`` (see Jobs.complete_async); the caller
        wakes the worker. Raises StorageUnavailable like any write.
        """
        return await self.state.write(store_async_answer, request_id, actions, self.config.current)

    async def start(self) -> None:
        """Starts the background loops (idempotent)."""
        if self._started:
            return
        self._started = True
        keep = self.supervisor.keep_running
        self.pacing.start()
        if self.role in ("all", "worker"):
            # Always on, also with workers disabled: the journal becomes conversation state and
            # queued work whether or not crews are being asked right now.
            self._spawn("delivery-applier", keep("delivery-applier", self.applier.run))
            # Housekeeping, also with workers disabled; one process at a time does each (leases).
            self._spawn("retention", keep("retention", self.retention.run))
            self._spawn("search-index", keep("search-index", self.search_index.run))
        if self.runs_worker:
            self.worker = QueueWorker(
                config=self.config, state=self.state, crews=self.crews, breakers=self.breakers, slots=self.slots,
                poster=self.poster, chatwoot=self.chatwoot, session=self.session, metrics=self.metrics,
                pacing=self.pacing, worker_id=self.process_id)
            self._spawn("queue-worker", keep("queue-worker", self.worker.run))
            self.watchdog = HandoffWatchdog(config=self.config, state=self.state, metrics=self.metrics,
                                            queued=self.work_queued)
            self._spawn("handoff-watchdog", keep("handoff-watchdog", self.watchdog.run))
        if self.role == "worker" or shared_by_replicas(self.state):
            # Webhooks and callbacks are committed by the intake processes (or other replicas on
            # one PostgreSQL database): notice them.
            self._spawn("watch-others", keep("watch-others", self._watch_others))
        self._spawn("metrics", keep("metrics", self._flush_forever))
        self._spawn("health-probes", self.health.run())
        self._spawn("config-watcher", self.config_manager.watch())
        await self.config_manager.publish()
        # This process's row at once, not a beat later: tools that must not run beside a sidecar
        # (restore, compact) look for it, and the sidecar says it is ready only after this.
        with contextlib.suppress(StorageUnavailable):
            await self.flush()

    def _spawn(self, name: str, coro: Awaitable[Any]) -> None:
        self._tasks.append(asyncio.ensure_future(coro))
        self._tasks[-1].set_name(name)

    async def stop(self, grace_seconds: float) -> None:
        """Stops taking work, lets work in progress finish (bounded), stops the loops."""
        if self.worker is not None:
            # Leave the server a little of the same grace to close connections after the worker.
            await _bounded("worker", self.worker.stop(grace_seconds=max(grace_seconds - 2, grace_seconds * 0.75)),
                           grace_seconds + 5)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            await _bounded(task.get_name(), task, 5)
        self._tasks.clear()
        self.pacing.stop()
        if self._opened:
            await _bounded("metrics flush", self.flush(), 5)
            if self.role in ("all", "worker"):
                await _bounded("retention lease", self.retention.release(), 5)
                await _bounded("search index lease", self.search_index.release(), 5)
            with contextlib.suppress(StateError):
                await self.state.write(lambda tx: tx.processes.leave(self.process_id))
        self._started = False

    async def close(self) -> None:
        """Closes what :meth:`open` opened (idempotent)."""
        if not self._opened:
            return
        self._opened = False
        await self.crews.close()  # ends MCP sessions before the loop goes away
        await self.http.close()
        await self.session.close()
        await asyncio.to_thread(self.state.close)

    # -- the every-second loop ------------------------------------------------------------------------
    async def flush(self, *, beat: bool = True) -> None:
        """Adds metric increments to the stored totals, saves learned identities, and writes this
        process's row (its crew calls in flight) - one transaction."""
        async with self.metrics_lock:
            await self._flush(beat)

    async def _flush(self, beat: bool) -> None:
        rows = self.metrics.flush_rows()
        ids = sorted(self.self_user_ids)
        save_ids = ids != self._saved_user_ids
        info = {"crew_calls": self.slots.describe(), "held": self.worker.held if self.worker else 0,
                "share": self.pacing.share, "journal_problem": self.applier.problem,
                "warnings": list(self.supervisor.warnings()), "crashing": self.supervisor.recently_crashed()}
        now = time.time()

        def write(tx: Tx) -> None:
            tx.metrics.add(rows, now)
            self.metrics.stored(rows)  # on the writer's thread: see Metrics
            if save_ids:
                tx.documents.put(SELF_USER_IDS, ids, now)
            if beat:
                tx.processes.beat(self.process_id, role=self.role, host=socket.gethostname(), pid=os.getpid(),
                                  version=__version__, started_at=self.started_at, info=info, now=now)

        try:
            await self.state.write(write)
        except StateError:
            self.metrics.restore(rows)  # not stored: they go out with the next flush
            raise
        if save_ids:
            self._saved_user_ids = ids
        self.metrics.set_gauge("connector_background_share", self.pacing.share)

    async def _watch_others(self) -> None:
        """Wakes the applier and the worker when another process committed (a cheap counter the
        database keeps: SQLite's data_version)."""
        marker = await self.state.call(lambda db: db.change_marker())
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            try:
                now = await self.state.call(lambda db: db.change_marker())
            except StateError:
                continue
            if now != marker:
                marker = now
                self.applier.wake()
                self.work_queued()

    async def _flush_forever(self) -> None:
        last_beat = 0.0
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            beat = time.monotonic() - last_beat >= BEAT_SECONDS
            try:
                # Shielded: the loop is cancelled at shutdown, and a flush cut between taking
                # its increments and its commit would lose them. stop()'s own flush then waits
                # for this one on the metrics lock.
                await asyncio.shield(self.flush(beat=beat))
                if beat:
                    last_beat = time.monotonic()
            except StorageUnavailable as exc:
                log_event(log, "metrics.flush_failed", level=30, error=str(exc))


async def _bounded(step: str, awaitable: Awaitable[Any], seconds: float) -> None:
    """Runs one shutdown step; a step that hangs or fails is logged, never allowed to keep the
    process from exiting (leases left behind simply expire)."""
    try:
        await asyncio.wait_for(awaitable, seconds)
    except asyncio.CancelledError:
        pass
    except TimeoutError:
        log_event(log, "sidecar.shutdown_step_timed_out", level=30, step=step, seconds=seconds)
    except Exception as exc:  # noqa: BLE001 - shutting down regardless
        log_event(log, "sidecar.shutdown_step_failed", level=30, step=step, error=type(exc).__name__)
