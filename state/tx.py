"""Provides Tx: one transaction's (or one read's) access to every store.

A unit of work is a plain function ``unit(tx, *args)``; the back-end runs it inside a transaction
(``Database.transaction``, or the sidecar's asynchronous ``StateService.write``) and commits once
it returns. Reads get a Tx on a read-only connection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from state.errors import StateError, StorageUnavailable
from state.records import DeadLetter, Job
from state.sql import Sql
from state.stores.audit import Audit
from state.stores.conversations import Conversations, TextSearch
from state.stores.decisions import Decisions
from state.stores.documents import Documents
from state.stores.effects import Effects
from state.stores.handoffs import Handoffs
from state.stores.jobs import Jobs
from state.stores.journal import Journal
from state.stores.messages import Messages
from state.stores.metrics import MetricValues
from state.stores.outcomes import Outcomes
from state.stores.processes import Processes

ErrorKind = Callable[[BaseException], type[StateError] | None]
"""Tells storage trouble (StorageUnavailable) from a statement's own fault (StateError) for a
back-end's exception; None for an exception that is not the database's."""


class Tx:
    __slots__ = ("sql", "journal", "conversations", "messages", "jobs", "effects", "decisions", "metrics",
                 "audit", "documents", "processes", "handoffs", "outcomes", "search", "_error_kind")

    def __init__(self, sql: Sql, error_kind: ErrorKind, search: TextSearch | None = None) -> None:
        self.sql = sql
        self.search = search
        """The back-end's index for the conversations filter, or None (the filter scans)."""
        self.journal = Journal(sql)
        self.conversations = Conversations(sql, search)
        self.messages = Messages(sql)
        self.jobs = Jobs(sql)
        self.effects = Effects(sql)
        self.decisions = Decisions(sql)
        self.metrics = MetricValues(sql)
        self.audit = Audit(sql)
        self.documents = Documents(sql)
        self.processes = Processes(sql)
        self.handoffs = Handoffs(sql)
        self.outcomes = Outcomes(sql)
        self._error_kind = error_kind

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Undoes only the enclosed writes when the block raises (the transaction goes on).
        Storage trouble comes out as StorageUnavailable, any other database error as StateError."""
        self.sql.execute("SAVEPOINT part")
        try:
            yield
        except BaseException as exc:
            try:
                self.sql.execute("ROLLBACK TO SAVEPOINT part")
                self.sql.execute("RELEASE SAVEPOINT part")
            except Exception:  # noqa: BLE001 - the transaction itself is gone; the caller's fails whole
                pass
            kind = self._error_kind(exc)
            if kind is not None and not isinstance(exc, StateError):
                raise kind(str(exc)) from exc
            raise
        self.sql.execute("RELEASE SAVEPOINT part")

    # -- reads that join stores --------------------------------------------------------------
    def dead_letter(self, job_id: int) -> DeadLetter | None:
        """A dead job with the messages it carried."""
        row = self.sql.one("SELECT * FROM jobs WHERE id=?", (job_id,))
        if row is None:
            return None
        job = Job.from_row(row)
        return DeadLetter(job=job, reason=job.last_error, messages=tuple(self.messages.for_ids(job.message_ids)))

    def dead_letters(self, limit: int = 200, offset: int = 0) -> list[DeadLetter]:
        return [DeadLetter(job=j, reason=j.last_error) for j in self.jobs.dead(limit, offset)]


__all__ = ["ErrorKind", "StorageUnavailable", "Tx"]
