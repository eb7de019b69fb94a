"""Provides Messages: each conversation's history as the sidecar saw it (customer, bot, agents, notes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from state.records import MessageRow
from state.sql import Sql, dumps, marks
from state.vocabulary import PUBLIC_ROLES

_PUBLIC = ", ".join(f"'{role}'" for role in PUBLIC_ROLES)


class Messages:
    __slots__ = ("sql",)

    def __init__(self, sql: Sql) -> None:
        self.sql = sql

    def insert(self, *, account_id: int, conversation_id: int, message_id: int | None, role: str,
               sender_type: str, sender_id: int | None, content: str, content_type: str,
               attachments: Sequence[dict[str, Any]], private: bool, content_hash: str, created_at: float,
               job_id: int | None = None) -> bool:
        """Stores a message once (the Chatwoot message id is unique); False if it is known."""
        return self.sql.execute(
            "INSERT INTO messages(account_id, conversation_id, message_id, role, sender_type, sender_id, content, "
            "content_type, attachments, private, content_hash, job_id, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT DO NOTHING",
            (account_id, conversation_id, message_id, role, sender_type, sender_id, content, content_type,
             dumps(list(attachments)) if attachments else "[]", int(private), content_hash, job_id, created_at),
        ) == 1

    def by_ids(self, account_id: int, conversation_id: int, ids: Sequence[int]) -> list[MessageRow]:
        if not ids:
            return []
        return [MessageRow.from_row(r) for r in self.sql.all(
            f"SELECT * FROM messages WHERE account_id=? AND conversation_id=? AND message_id IN ({marks(len(ids))}) "
            "ORDER BY id", (account_id, conversation_id, *ids))]

    def history(self, account_id: int, conversation_id: int, limit: int,
                exclude_ids: Sequence[int] = ()) -> list[MessageRow]:
        """The last ``limit`` public messages before the current burst, oldest first."""
        if limit <= 0:
            return []
        exclude = list(exclude_ids)
        not_in = f"AND (message_id IS NULL OR message_id NOT IN ({marks(len(exclude))}))" if exclude else ""
        rows = self.sql.all(
            f"SELECT * FROM messages WHERE account_id=? AND conversation_id=? AND private=0 "
            f"AND role IN ({_PUBLIC}) {not_in} ORDER BY id DESC LIMIT ?",
            (account_id, conversation_id, *exclude, limit))
        return [MessageRow.from_row(r) for r in reversed(rows)]

    def own_message_seen(self, account_id: int, conversation_id: int, content_hash: str, since: float) -> int | None:
        """The Chatwoot id of an echoed bot/note message with this content, if any."""
        return self.sql.scalar(
            "SELECT message_id FROM messages WHERE account_id=? AND conversation_id=? AND content_hash=? "
            "AND role IN ('bot','note') AND created_at>=? AND message_id IS NOT NULL ORDER BY id DESC LIMIT 1",
            (account_id, conversation_id, content_hash, since))

    def exists(self, message_id: int) -> bool:
        return self.sql.scalar("SELECT 1 FROM messages WHERE message_id=?", (message_id,)) is not None

    def latest_customer_message_id(self, account_id: int, conversation_id: int) -> int | None:
        return self.sql.scalar(
            "SELECT max(message_id) FROM messages WHERE account_id=? AND conversation_id=? AND role='customer'",
            (account_id, conversation_id))

    # -- budgets ----------------------------------------------------------------------------
    def recent_hashes(self, account_id: int, conversation_id: int, limit: int) -> list[tuple[str, str]]:
        """(role, content digest) of the conversation's last ``limit`` bot and customer messages,
        newest first."""
        return [(r["role"], r["content_hash"]) for r in self.sql.all(
            "SELECT role, content_hash FROM messages WHERE account_id=? AND conversation_id=? "
            "AND role IN ('bot','customer') ORDER BY id DESC LIMIT ?", (account_id, conversation_id, limit))]

    # -- erasure ----------------------------------------------------------------------------
    def erase(self, account_id: int, conversation_id: int) -> int:
        """Blanks every message's text, attachments and digest; the rows (who wrote when) stay."""
        return self.sql.execute(
            "UPDATE messages SET content='', attachments='[]', content_hash='' WHERE account_id=? AND conversation_id=?",
            (account_id, conversation_id))

    # -- retention --------------------------------------------------------------------------
    def prune(self, before: float, limit: int) -> int:
        """Deletes up to ``limit`` messages written before ``before``, except in conversations
        with open work or a dead letter (a crew still needs their history; an operator retrying
        the dead letter too)."""
        return self.sql.execute(
            "DELETE FROM messages WHERE id IN (SELECT m.id FROM messages m WHERE m.created_at<? "
            "AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.account_id=m.account_id "
            "AND j.conversation_id=m.conversation_id "
            "AND j.state IN ('pending','in_flight','waiting','dead')) ORDER BY m.created_at LIMIT ?)", (before, limit))

    def oldest(self) -> float | None:
        return self.sql.scalar("SELECT min(created_at) FROM messages")

    # -- console ----------------------------------------------------------------------------
    def timeline(self, account_id: int, conversation_id: int, limit: int = 500) -> list[MessageRow]:
        rows = self.sql.all(
            "SELECT * FROM messages WHERE account_id=? AND conversation_id=? ORDER BY id DESC LIMIT ?",
            (account_id, conversation_id, limit))
        return [MessageRow.from_row(r) for r in reversed(rows)]

    def for_ids(self, ids: Sequence[int]) -> list[MessageRow]:
        """Messages by Chatwoot id, whatever their conversation (a dead letter's burst)."""
        if not ids:
            return []
        return [MessageRow.from_row(r) for r in self.sql.all(
            f"SELECT * FROM messages WHERE message_id IN ({marks(len(ids))}) ORDER BY id", list(ids))]
