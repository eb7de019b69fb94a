"""Provides Conversations: the stored view of each Chatwoot conversation and who answers it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from state.errors import StateError
from state.records import ConversationRow
from state.sql import Dialect, Sql, dumps
from state.vocabulary import OWNERS

FIELDS = frozenset({
    "inbox_id", "inbox_name", "channel", "channel_type", "contact_id", "contact_name", "contact_json",
    "status", "assignee_type", "assignee_id", "team_id", "labels", "can_reply", "crew", "rule", "mode", "last_message_at",
    "last_message_preview", "last_message_role", "last_activity_at",
    "remote_updated_at",
})
"""Columns a caller may set; the owner changes only through :meth:`Conversations.set_owner`."""
_JSON_FIELDS = ("labels", "contact_json")
RECENT_FIRST = "ORDER BY last_message_at DESC, id"
"""Most recently active first; the id settles ties, so every way of finding a page agrees.
SQLite sorts NULL lowest, so a conversation without a message comes last (see :func:`recent_first`)."""


def recent_first(dialect: Dialect) -> str:
    """:data:`RECENT_FIRST` for ``dialect``: PostgreSQL sorts NULL highest, so it must be told
    to put conversations without a message last, where SQLite puts them anyway."""
    return f"ORDER BY last_message_at DESC{dialect.nulls_last}, id"


def text_match(dialect: Dialect, text: str) -> tuple[str, list[Any]]:
    """The free-text filter as an SQL condition on one conversations row, and its parameters.

    ``text`` (stripped) is looked for anywhere in the contact's name, the inbox's name and the
    last message's preview, ignoring case (SQLite: ASCII letters; PostgreSQL: every letter), or
    equals the conversation's number. ``%`` and ``_`` are taken out, not wildcards. This is what
    the filter means on every back-end; an index only finds the same rows sooner.
    """
    like = f"%{search_term(text)}%"
    op = dialect.like
    return (f"(contact_name {op} ? OR inbox_name {op} ? OR last_message_preview {op} ? "
            "OR CAST(conversation_id AS TEXT)=?)", [like, like, like, text.strip()])


def search_term(text: str) -> str:
    """What the filter looks for in the texts: the text stripped, without LIKE's wildcards."""
    return text.strip().replace("%", "").replace("_", "")


class TextSearch(Protocol):
    """A back-end's index for the free-text filter (SQLite: ``state.sqlite.search``): finds the
    page a scan would find, sooner, and is kept up to date in the background."""

    def page(self, where: Sequence[str], params: Sequence[Any], text: str, limit: int,
             offset: int) -> list[dict[str, Any]]:
        """The page ``text`` and the conditions ``where`` select, most recent first."""
        ...

    def pending(self) -> int:
        """Conversations changed since they were last indexed."""
        ...

    def index_pending(self, limit: int, ids: Sequence[int] | None = None) -> int:
        """Indexes up to ``limit`` changed conversations (or those of ``ids``); how many."""
        ...

    def merge_step(self, pages: int) -> bool:
        """Some upkeep of the index; False when there was none to do."""
        ...


class Conversations:
    __slots__ = ("sql", "search")

    def __init__(self, sql: Sql, search: TextSearch | None = None) -> None:
        self.sql = sql
        self.search = search
        """The back-end's text index for :meth:`page`; None: the filter scans (LIKE)."""

    def get(self, account_id: int, conversation_id: int) -> ConversationRow | None:
        row = self.sql.one("SELECT * FROM conversations WHERE account_id=? AND conversation_id=?",
                           (account_id, conversation_id))
        return ConversationRow.from_row(row) if row else None

    def last_activity_at(self, account_id: int, conversation_id: int) -> float | None:
        return self.sql.scalar("SELECT last_activity_at FROM conversations WHERE account_id=? AND conversation_id=?",
                               (account_id, conversation_id))

    def upsert(self, account_id: int, conversation_id: int, now: float, **fields: Any) -> None:
        """Creates the conversation or updates the given fields (the others keep their values)."""
        unknown = set(fields) - FIELDS
        if unknown:
            raise StateError(f"unknown conversation fields: {sorted(unknown)}")
        values = {k: (dumps(v) if k in _JSON_FIELDS and not isinstance(v, str) else v) for k, v in fields.items()}
        names = list(values)
        cols = ["account_id", "conversation_id", "created_at", "updated_at", "owner_changed_at", *names]
        sets = "".join(f"{n}=excluded.{n}, " for n in names)
        self.sql.execute(
            f"INSERT INTO conversations({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
            f"ON CONFLICT(account_id, conversation_id) DO UPDATE SET {sets}updated_at=excluded.updated_at",
            (account_id, conversation_id, now, now, now, *values.values()),
        )

    def set_owner(self, account_id: int, conversation_id: int, owner: str, reason: str, now: float) -> None:
        if owner not in OWNERS:
            raise StateError(f"not an owner: {owner}")
        self.sql.execute(
            "UPDATE conversations SET owner=?, owner_reason=?, owner_changed_at=?, updated_at=? "
            "WHERE account_id=? AND conversation_id=?", (owner, reason, now, now, account_id, conversation_id))

    def set_crew(self, account_id: int, conversation_id: int, crew: str) -> None:
        self.sql.execute("UPDATE conversations SET crew=? WHERE account_id=? AND conversation_id=?",
                         (crew, account_id, conversation_id))

    # -- console ----------------------------------------------------------------------------
    def page(self, *, channel: str | None = None, crew: str | None = None, owner: str | None = None,
             text: str | None = None, limit: int = 100, offset: int = 0) -> list[ConversationRow]:
        """Most recently active first; every filter is optional."""
        where: list[str] = []
        params: list[Any] = []
        if channel:
            where.append("channel=?")
            params.append(channel)
        if crew:
            where.append("crew=?")
            params.append(crew)
        if owner in OWNERS:
            where.append("owner=?")
            params.append(owner)
        if text and self.search is not None:
            rows = self.search.page(where, params, text, limit, offset)
        else:
            if text:
                # Free text looks at what an operator can see in the row.
                clause, more = text_match(self.sql.dialect, text)
                where.append(clause)
                params.extend(more)
            rows = self.scan(where, params, limit, offset)
        return [ConversationRow.from_row(r) for r in rows]

    def scan(self, where: Sequence[str], params: Sequence[Any], limit: int, offset: int) -> list[dict[str, Any]]:
        """A page of rows matching every condition of ``where``, most recent first."""
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        return self.sql.all(f"SELECT * FROM conversations {clause} {recent_first(self.sql.dialect)} LIMIT ? OFFSET ?",
                            [*params, limit, offset])

    # -- erasure ----------------------------------------------------------------------------
    def of_contact(self, contact_id: int, account_id: int | None = None) -> list[tuple[int, int, int]]:
        """(account id, conversation id, row id) of the contact's conversations."""
        extra, params = (" AND account_id=?", [account_id]) if account_id is not None else ("", [])
        return [(r["account_id"], r["conversation_id"], r["id"]) for r in self.sql.all(
            f"SELECT account_id, conversation_id, id FROM conversations WHERE contact_id=?{extra} ORDER BY id",
            [contact_id, *params])]

    def numbered(self, conversation_id: int, account_id: int | None = None) -> list[tuple[int, int, int]]:
        """(account id, conversation id, row id) of the conversations with this number (one per account)."""
        extra, params = (" AND account_id=?", [account_id]) if account_id is not None else ("", [])
        return [(r["account_id"], r["conversation_id"], r["id"]) for r in self.sql.all(
            f"SELECT account_id, conversation_id, id FROM conversations WHERE conversation_id=?{extra} ORDER BY id",
            [conversation_id, *params])]

    def erase(self, account_id: int, conversation_id: int) -> int:
        """Forgets who the customer is and what they last wrote (the row, its ids and counts stay)."""
        return self.sql.execute(
            "UPDATE conversations SET contact_name='', contact_json='{}', last_message_preview='' "
            "WHERE account_id=? AND conversation_id=?",
            (account_id, conversation_id))

    def count(self) -> int:
        return int(self.sql.scalar("SELECT count(*) FROM conversations") or 0)

    def inbox_names(self, inbox_ids: list[int]) -> dict[int, str]:
        """The name Chatwoot last sent for each inbox (one short lookup per inbox asked for)."""
        names: dict[int, str] = {}
        for inbox_id in inbox_ids:
            name = self.sql.scalar("SELECT inbox_name FROM conversations WHERE inbox_id=? AND inbox_name<>'' "
                                   "LIMIT 1", (inbox_id,))
            if name:
                names[inbox_id] = str(name)
        return names

    def facets(self, limit: int = 100) -> tuple[list[str], list[str]]:
        """Distinct channels and crews, for filter pickers (walks the two covering indexes)."""
        channels = self.sql.column(
            "SELECT DISTINCT channel FROM conversations WHERE channel<>'' ORDER BY channel LIMIT ?", (limit,))
        crews = self.sql.column(
            "SELECT DISTINCT crew FROM conversations WHERE crew<>'' ORDER BY crew LIMIT ?", (limit,))
        return channels, crews
