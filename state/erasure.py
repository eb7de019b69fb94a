"""Provides erasure: forgetting a person (a Chatwoot contact) or one conversation on request.

What goes, in one transaction: the text of every message, the raw webhook payloads, the crew
envelopes and answers, the contact's name and details, the last-message preview, decision and
hand-off reasons, error texts, a shadow crew's answers and the digests of posted messages; the
filter's index forgets them too. What stays: the rows themselves with their ids, times, kinds and
outcomes, so every count and analytics figure is unchanged. Open work of those conversations is
cancelled and their dead letters discarded (nothing is left to answer or retry). The erasure is
recorded in the audit trail (who, when, which contact or conversation, how many rows) without any
of the erased content.

Portable SQL (each store blanks its own rows); the back-end makes what it overwrites go from the
storage too (``Database.erase``: SQLite zeroes it in the file; PostgreSQL vacuums the old row
versions away, see ``state.postgres.maintenance``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from state.errors import StateError
from state.sql import dumps
from state.tx import Tx
from state.vocabulary import SEARCH_PURGE

ERASED = "erased on request"
"""The reason written where an erased job's error text was."""
FORGET_ACTION = "forget"
"""The operator action recorded in the audit trail."""


class BadTarget(StateError):
    """An erasure request that names nobody, or names them ambiguously; ``key`` is the field."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Target:
    """Whom to forget: a contact (optionally in one account), or one conversation."""

    contact_id: int | None = None
    conversation_id: int | None = None
    account_id: int | None = None

    def __post_init__(self) -> None:
        if (self.contact_id is None) == (self.conversation_id is None):
            raise BadTarget("contact_id", "give either a contact id or a conversation id")
        for key in ("contact_id", "conversation_id", "account_id"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise BadTarget(key, "must be a whole number >= 1")

    def describe(self) -> str:
        """``contact 42``, ``contact 42 in account 1`` or ``conversation 1/7`` (the audit's target)."""
        if self.contact_id is not None:
            where = f" in account {self.account_id}" if self.account_id is not None else ""
            return f"contact {self.contact_id}{where}"
        if self.account_id is not None:
            return f"conversation {self.account_id}/{self.conversation_id}"
        return f"conversation {self.conversation_id}"


@dataclass(frozen=True, slots=True)
class Erasure:
    """What an erasure blanked (row counts); never any of the content."""

    target: str
    conversations: int = 0
    messages: int = 0
    deliveries: int = 0
    jobs: int = 0
    cancelled_jobs: int = 0
    discarded_dead_letters: int = 0
    decisions: int = 0
    outcomes: int = 0
    handoffs: int = 0
    actions: int = 0

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if k != "target"}

    @property
    def nothing(self) -> bool:
        return not any(self.counts().values())


def conversations_of(tx: Tx, target: Target) -> list[tuple[int, int, int]]:
    """(account id, conversation id, row id) of the target's stored conversations. A conversation
    number found in several accounts without an account id is ambiguous (BadTarget)."""
    if target.contact_id is not None:
        return tx.conversations.of_contact(target.contact_id, target.account_id)
    assert target.conversation_id is not None
    found = tx.conversations.numbered(target.conversation_id, target.account_id)
    if len(found) > 1:
        accounts = ", ".join(str(account) for account, _c, _r in found)
        raise BadTarget("account_id", f"conversation {target.conversation_id} exists in accounts {accounts}: "
                                      "name the account")
    return found


def forget(tx: Tx, target: Target, *, actor: str, now: float) -> Erasure:
    """Erases the target's content (see the module's docstring) and records it in the audit trail."""
    found = conversations_of(tx, target)
    totals = {field.name: 0 for field in fields(Erasure) if field.name != "target"}
    for account_id, conversation_id, _row in found:
        where = (account_id, conversation_id)
        jobs, cancelled, discarded = tx.jobs.erase(*where, ERASED, now)
        for key, value in (("conversations", tx.conversations.erase(*where)), ("messages", tx.messages.erase(*where)),
                           ("deliveries", tx.journal.erase(*where)), ("jobs", jobs), ("cancelled_jobs", cancelled),
                           ("discarded_dead_letters", discarded), ("decisions", tx.decisions.erase(*where)),
                           ("outcomes", tx.outcomes.erase(*where)), ("handoffs", tx.handoffs.erase(*where)),
                           ("actions", tx.effects.erase(*where))):
            totals[key] += value
    if target.contact_id is not None:
        totals["deliveries"] += tx.journal.erase_contact_events(target.contact_id, target.account_id)
    if found:
        if tx.search is not None:
            # The index's copy of the old texts goes now; pieces of them in older segments go when
            # the worker process merges the index (SEARCH_PURGE).
            tx.search.index_pending(len(found), ids=[row for _a, _c, row in found])
        # Every back-end keeps old copies for a while (SQLite: index segments, the WAL; PostgreSQL:
        # the dead row versions): the worker process clears them in the background.
        tx.documents.put(SEARCH_PURGE, now, now)
    erasure = Erasure(target=target.describe(), **totals)
    tx.audit.operator_action(actor, FORGET_ACTION, erasure.target, dumps(erasure.counts()), now)
    return erasure
