"""Provides Reader: the console's read-only window on the connector's state.

One read-only connection is shared by every worker thread behind a lock. Each query runs in
autocommit mode, so no read transaction outlives its statement and the sidecar's checkpoints
are never held back. Any storage problem becomes a :class:`ReadError` with one line of text.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

from console import health
from console.hours import inbox_hours, modes_of
from console.snapshots import (
    AnalyticsData,
    ConfigData,
    ConversationDetail,
    ConversationQuery,
    ConversationsPage,
    DeadLettersData,
    DecisionsData,
    OverviewData,
)
from state import (
    Database,
    DatabaseMissing,
    DeadLetter,
    SchemaMismatch,
    StateError,
    StorageFigures,
    Tx,
    open_database,
    shown_location,
)
from state.analytics import WINDOWS, summarize
from state.retention import oldest_rows
from state.vocabulary import CONFIG_EFFECTIVE, CONFIG_STATUS, HEALTH_SNAPSHOT, RETENTION_STATUS

T = TypeVar("T")
Clock = Callable[[], float]

HOUR = 3600.0
_FACETS_TTL = 30.0


class ReadError(Exception):
    """The database could not be read; ``str()`` is a one-line message for the operator."""


def describe(path: str, exc: BaseException) -> str:
    """One line that tells the operator what is wrong and what to do."""
    if isinstance(exc, DatabaseMissing):
        return (f"No database at {path}. Start the sidecar (python -m sidecar) "
                "or point the console at it with --db PATH or --database-url URL.")
    if isinstance(exc, SchemaMismatch):
        return f"Database {path} has another schema version: {exc}"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "locked" in text or "busy" in text:
        return f"Database {path} is locked by another process ({text}); retrying."
    return f"Cannot read database {path}: {text}"


class Reader:
    """Read-only access to the state for the console's screens."""

    def __init__(self, path: str, clock: Clock = time.time) -> None:
        self.location = path
        """What is opened: a SQLite path or a PostgreSQL URL (with its password)."""
        self.path = shown_location(path)
        """What is shown: the path, or the URL's host:port/database (never the password)."""
        self.clock = clock
        self._lock = threading.Lock()
        self._db: Database | None = None
        self._facets: tuple[float, tuple[str, ...], tuple[str, ...]] | None = None

    # -- plumbing ------------------------------------------------------------------------
    def _run(self, fn: Callable[[Tx], T]) -> T:
        with self._lock:
            try:
                if self._db is None:
                    self._db = open_database(self.location, readonly=True)
                return self._db.read(fn)
            except (StateError, sqlite3.Error, OSError) as exc:
                # Reconnect next time: the file may have been replaced or migrated meanwhile.
                self._close_locked()
                raise ReadError(describe(self.path, exc)) from exc

    def _close_locked(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def check(self) -> None:
        """Opens the database and verifies its schema (raises ReadError)."""
        self._run(lambda tx: tx.conversations.count())

    def data_version(self) -> int:
        """Changes whenever the sidecar (or anyone) commits; cheap enough to poll often."""
        with self._lock:
            try:
                if self._db is None:
                    self._db = open_database(self.location, readonly=True)
                return self._db.change_marker()
            except (StateError, sqlite3.Error, OSError) as exc:
                self._close_locked()
                raise ReadError(describe(self.path, exc)) from exc

    # -- screens -------------------------------------------------------------------------
    def overview(self) -> OverviewData:
        now = self.clock()

        def read(tx: Tx) -> OverviewData:
            snapshot, updated_at = tx.documents.get_with_age(HEALTH_SNAPSHOT)
            effective = tx.documents.get(CONFIG_EFFECTIVE)
            stale_after = 3 * health.probe_interval(effective)
            metrics = tx.metrics.totals()
            hour_ago = now - HOUR
            outcomes = tx.decisions.crew_outcomes(hour_ago)
            webhooks = tx.journal.per_minute(hour_ago)
            latency = tx.decisions.crew_latency_per_minute(hour_ago)
            backlog = tx.journal.backlog(now)
            last_prune = tx.documents.get(RETENTION_STATUS)
            return OverviewData(
                now=now,
                sidecar=health.sidecar_status(snapshot, updated_at, now, stale_after),
                health_age=None if updated_at is None else now - updated_at,
                warnings=health.warnings(snapshot),
                components=health.components(snapshot),
                queue=tx.jobs.stats(now),
                webhooks_per_minute=health.per_minute(webhooks, hour_ago),
                latency_per_minute=health.per_minute(((m, mean) for m, mean, _n in latency), hour_ago),
                crew_requests=sum(outcomes.values()),
                crew_failures=outcomes.get("failed", 0) + outcomes.get("retry", 0),
                signature_rejections=health.counter_sum(
                    metrics, "connector_webhooks_received_total", outcome="rejected_signature"),
                malformed_rejections=health.counter_sum(
                    metrics, "connector_webhooks_received_total", outcome="rejected_malformed"),
                webhooks_last_hour=sum(n for _m, n in webhooks),
                last_delivery_at=tx.journal.last_received_at(),
                unapplied=backlog.unapplied,
                oldest_unapplied_age=backlog.oldest_age,
                oldest_row=oldest_rows(tx).oldest,
                last_prune=last_prune if isinstance(last_prune, dict) else None,
            )

        return replace(self._run(read), storage=self._storage())

    def _storage(self) -> StorageFigures | None:
        """The file's figures (None when they cannot be read: the rest of the overview still shows)."""
        with self._lock:
            try:
                return self._db.storage() if self._db is not None else None
            except StateError:
                return None

    def conversations(self, query: ConversationQuery) -> ConversationsPage:
        now = self.clock()

        def read(tx: Tx) -> ConversationsPage:
            # One extra row tells whether a next page exists without counting the filter.
            rows = tx.conversations.page(
                channel=query.channel or None, crew=query.crew or None, owner=query.owner or None,
                text=query.text.strip() or None, limit=query.page_size + 1,
                offset=query.page * query.page_size,
            )
            channels, crews = self._facets_locked(tx, now)
            return ConversationsPage(
                now=now, query=query, rows=tuple(rows[: query.page_size]),
                has_next=len(rows) > query.page_size,
                total=None if query.filtered else tx.conversations.count(),
                channels=channels, crews=crews,
            )

        return self._run(read)

    def _facets_locked(self, tx: Tx, now: float) -> tuple[tuple[str, ...], tuple[str, ...]]:
        # New channels and crews appear rarely; re-reading them every second would be waste.
        if self._facets is None or now - self._facets[0] > _FACETS_TTL or now < self._facets[0]:
            channels, crews = tx.conversations.facets()
            self._facets = (now, tuple(channels), tuple(crews))
        return self._facets[1], self._facets[2]

    def conversation(self, account_id: int, conversation_id: int) -> ConversationDetail:
        now = self.clock()

        def read(tx: Tx) -> ConversationDetail:
            jobs = tx.jobs.for_conversation(account_id, conversation_id)
            job_ids = [j.id for j in jobs]
            return ConversationDetail(
                now=now, account_id=account_id, conversation_id=conversation_id,
                conversation=tx.conversations.get(account_id, conversation_id),
                messages=tuple(tx.messages.timeline(account_id, conversation_id)),
                decisions=tuple(tx.decisions.for_conversation(account_id, conversation_id)),
                jobs=tuple(jobs),
                attempts=tuple(tx.decisions.attempts_for_jobs(job_ids)),
                actions=tuple(tx.effects.for_jobs(job_ids)),
            )

        return self._run(read)

    def decisions(self, window_seconds: float) -> DecisionsData:
        now = self.clock()

        def read(tx: Tx) -> DecisionsData:
            counts = tx.decisions.counts(now - window_seconds)
            per_crew: Counter[str] = Counter()
            per_source: Counter[str] = Counter()
            for crew, source, n in counts:
                per_crew[crew] += n
                per_source[source] += n
            return DecisionsData(
                now=now, window_seconds=window_seconds, rows=tuple(tx.decisions.recent(limit=200)),
                per_crew=tuple(per_crew.most_common()), per_source=tuple(per_source.most_common()),
            )

        return self._run(read)

    def dead_letters(self) -> DeadLettersData:
        now = self.clock()

        def read(tx: Tx) -> DeadLettersData:
            return DeadLettersData(now=now, rows=tuple(tx.dead_letters(limit=200)), total=tx.jobs.stats(now).dead)

        return self._run(read)

    def dead_letter(self, job_id: int) -> DeadLetter | None:
        return self._run(lambda tx: tx.dead_letter(job_id))

    def config(self) -> ConfigData:
        now = self.clock()

        def read(tx: Tx) -> ConfigData:
            status = tx.documents.get(CONFIG_STATUS)
            effective, updated_at = tx.documents.get_with_age(CONFIG_EFFECTIVE)
            return ConfigData(
                now=now,
                status=status if isinstance(status, dict) else None,
                effective=effective if isinstance(effective, dict) else None,
                effective_age=None if updated_at is None else now - updated_at,
                audit=tuple(tx.audit.config_changes(limit=100)),
                operator_actions=tuple(tx.audit.operator_actions(limit=100)),
            )

        return self._run(read)

    def analytics(self, window: str) -> AnalyticsData:
        now = self.clock()

        def read(tx: Tx) -> AnalyticsData:
            figures = summarize(tx, now - WINDOWS[window])
            effective = tx.documents.get(CONFIG_EFFECTIVE)
            config = effective if isinstance(effective, dict) else {}
            return AnalyticsData(now=now, window=window, totals=figures["totals"], crews=figures["crews"],
                                 rules=figures["rules"], inboxes=inbox_hours(config, tx.conversations.inbox_names, now),
                                 shadow=tuple(tx.outcomes.recent("shadow", limit=50)), modes=modes_of(config))

        return self._run(read)
