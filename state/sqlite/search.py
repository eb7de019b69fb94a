"""Provides SqliteSearch: the console's free-text filter over a trigram index (SQLite FTS5).

The filter means what :func:`state.stores.conversations.text_match` says on every back-end (the
text anywhere in the contact's name, the inbox's name or the last message, ignoring case, or the
conversation's number); this module only finds the same page sooner than a scan:

1. A term of one or two characters: the trigram index cannot help, the scan can (such a term
   matches most rows, so the scan stops early).
2. The most recent ``RECENT_ROWS`` conversations are checked first: a term that fills the page
   there (a common word) needs nothing else.
3. Otherwise the index names its candidates (every conversation whose text contains the term,
   ignoring case for every letter) plus the conversations changed since they were last indexed
   (``search_dirty``), and the page is taken among those, each checked by the filter itself.
   When there are more than ``MAX_CANDIDATES`` of them, the scan is the quicker way (the term is
   common enough for the scan to stop early).

Whichever way is taken, the rows are those the plain scan would return, in the same order.

The index is kept up to date in the background (:meth:`SqliteSearch.index_pending`, called by the
sidecar's worker process, and right away by an erasure), never by a trigger on the hot path: see
migration ``0005_lifecycle``. Merging its segments is done in small steps (:meth:`merge_step`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from state.sql import Sql, marks
from state.stores.conversations import RECENT_FIRST, search_term, text_match

RECENT_ROWS = 2000
"""Most recent conversations checked before the index is asked (a common term stops here)."""
MAX_CANDIDATES = 5000
"""More candidates than this: a scan finds the page sooner than checking them all."""
_MIN_TRIGRAM = 3


def _phrase(term: str) -> str:
    """``term`` as one FTS5 phrase (a substring, with the trigram tokenizer)."""
    return '"' + term.replace('"', '""') + '"'


def _number(text: str) -> int | None:
    """The conversation number a filter text may be (the filter compares it as text)."""
    stripped = text.strip()
    if stripped.isascii() and stripped.isdigit() and len(stripped) <= 18:
        return int(stripped)
    return None


class SqliteSearch:
    """The trigram index of conversations: queries and upkeep."""

    __slots__ = ("sql",)

    def __init__(self, sql: Sql) -> None:
        self.sql = sql

    # -- the filter ----------------------------------------------------------------------------
    def page(self, where: Sequence[str], params: Sequence[Any], text: str, limit: int,
             offset: int) -> list[dict[str, Any]]:
        """The page the filter ``text`` plus the conditions ``where`` select, most recent first."""
        match, match_params = text_match(self.sql.dialect, text)
        term = search_term(text)
        base = f"WHERE {' AND '.join(where)}" if where else ""
        if len(term) >= _MIN_TRIGRAM:
            rows = self.sql.all(
                f"SELECT * FROM (SELECT * FROM conversations {base} {RECENT_FIRST} LIMIT ?) recent "
                f"WHERE {match} {RECENT_FIRST} LIMIT ? OFFSET ?",
                [*params, RECENT_ROWS, *match_params, limit, offset])
            if len(rows) == limit:
                return rows
            candidates = self.candidates(term, text)
            if candidates is not None:
                sources, source_params = candidates
                conditions = [f"id IN ({sources})", *where, match]
                return self.sql.all(
                    f"SELECT * FROM conversations WHERE {' AND '.join(conditions)} {RECENT_FIRST} LIMIT ? OFFSET ?",
                    [*source_params, *params, *match_params, limit, offset])
        conditions = [*where, match]
        return self.sql.all(f"SELECT * FROM conversations WHERE {' AND '.join(conditions)} {RECENT_FIRST} "
                            "LIMIT ? OFFSET ?", [*params, *match_params, limit, offset])

    def candidates(self, term: str, text: str) -> tuple[str, list[Any]] | None:
        """A subquery naming every conversation that may match (and its parameters), or None when
        there are too many for checking them to beat a scan."""
        found = self.sql.column("SELECT rowid FROM conversation_search WHERE conversation_search MATCH ? LIMIT ?",
                                (_phrase(term), MAX_CANDIDATES + 1))
        changed = int(self.sql.scalar("SELECT count(*) FROM search_dirty") or 0)
        if len(found) + changed > MAX_CANDIDATES:
            return None
        sources = ["SELECT rowid FROM conversation_search WHERE conversation_search MATCH ?",
                   "SELECT id FROM search_dirty"]
        source_params: list[Any] = [_phrase(term)]
        number = _number(text)
        if number is not None:
            sources.append("SELECT id FROM conversations WHERE conversation_id=?")
            source_params.append(number)
        return " UNION ALL ".join(sources), source_params

    # -- upkeep -------------------------------------------------------------------------------------
    def pending(self) -> int:
        """Conversations changed since they were last indexed."""
        return int(self.sql.scalar("SELECT count(*) FROM search_dirty") or 0)

    def index_pending(self, limit: int, ids: Sequence[int] | None = None) -> int:
        """Indexes up to ``limit`` changed conversations (or exactly ``ids``, those of them that
        changed): their old text out of the index, their current text in. Returns how many."""
        if ids is None:
            rows = self.sql.all("SELECT id, old_doc FROM search_dirty ORDER BY id LIMIT ?", (limit,))
        elif ids:
            rows = self.sql.all(f"SELECT id, old_doc FROM search_dirty WHERE id IN ({marks(len(ids))}) ORDER BY id",
                                list(ids))
        else:
            rows = []
        if not rows:
            return 0
        done = [r["id"] for r in rows]
        # FTS5 needs exactly the text it indexed to take a row out; rowids ascending, all removals
        # before all additions, so its pending data is written out as few times as possible.
        self.sql.many("INSERT INTO conversation_search(conversation_search, rowid, doc) VALUES ('delete', ?, ?)",
                      [(r["id"], r["old_doc"]) for r in rows if r["old_doc"] is not None])
        current = self.sql.all(f"SELECT id, doc FROM conversation_docs WHERE id IN ({marks(len(done))}) ORDER BY id",
                               done)
        self.sql.many("INSERT INTO conversation_search(rowid, doc) VALUES (?, ?)",
                      [(r["id"], r["doc"]) for r in current])
        self.sql.execute(f"DELETE FROM search_dirty WHERE id IN ({marks(len(done))})", done)
        return len(rows)

    def merge_step(self, pages: int) -> bool:
        """Merges some of the index's segments (at most ``pages`` pages written); False when there
        was nothing to merge. ``pages`` < 0 merges everything into one segment, in steps of that
        many pages (what an erasure asks for, so no piece of an erased text stays in an old
        segment)."""
        before = self.sql.conn.total_changes
        self.sql.execute("INSERT INTO conversation_search(conversation_search, rank) VALUES ('merge', ?)", (pages,))
        return bool(self.sql.conn.total_changes - before > 1)
