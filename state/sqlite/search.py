"""Provides SqliteSearch: the console's free-text filter over a trigram index (SQLite FTS5).

The filter means what :func:`state.stores.conversations.text_match` says on every back-end (the
text anywhere in the contact's name, the inbox's name or the last message, ignoring case, or the
conversation's number); this module only finds the same page sooner than a scan:

1. A term of one or two characters: the trigram index cannot help, the scan can (such a term
   matches most rows, so the scan stops early).
2. The most recent ``RECENT_ROWS`` conversations are checked first: a term that fills the page
   there (a common word) needs nothing else; one found there often enough to fill the page within
   ``SCAN_ROWS`` more rows is common enough for the scan, which goes on from there.
3. Otherwise (a rare term) the index names its candidates (every conversation whose text
   contains the term, ignoring case for every letter) plus the conversations changed since they
   were last indexed (``search_dirty``), and the page is taken among those, each checked by the
   filter itself.
   When the index finds more than ``MAX_CANDIDATES``, the scan is the quicker way (the term is
   common enough for the scan to stop early); so it is with more than ``MAX_CHANGED`` changed.

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

RECENT_ROWS = 1000
"""Most recent conversations checked before the index is asked (a common term stops here)."""
SCAN_ROWS = 5000
"""A term whose matches in the recent window promise the rest of the page within this many more
rows (at the same rate) is left to the scan: a few milliseconds, and the index would list
thousands."""
MAX_CANDIDATES = 500
"""More candidates than this: the term is common enough for the scan to find the page sooner (and
the index stops looking as soon as it has found this many)."""
MAX_CHANGED = 20000
"""More conversations than this waiting to be indexed (the sidecar is not running, or is far
behind): checking them all would cost about as much as the scan."""
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
        wanted = offset + limit
        if len(term) < _MIN_TRIGRAM:
            return self._select([*where, match], [*params, *match_params], limit, offset)
        window = self._window(where, params)
        if window is None:  # no recency range to split on: the scan, plainly
            return self._select([*where, match], [*params, *match_params], limit, offset)
        recent = self._select([*where, "last_message_at>=?", match], [*params, window, *match_params], wanted, 0)
        if len(recent) == wanted:
            return recent[offset:]  # the window held the whole page (a common term)
        if (wanted - len(recent)) * RECENT_ROWS > len(recent) * SCAN_ROWS:
            # Rare in the recent rows (the scan would likely go through more than SCAN_ROWS rows to
            # fill the page): the index names the few candidates sooner.
            candidates = self.candidates(term, text)
            if candidates is not None:
                sources, source_params = candidates
                return self._select([f"id IN ({sources})", *where, match],
                                    [*source_params, *params, *match_params], limit, offset)
        # Common enough for the scan to stop early: it goes on where the window ended, then to the
        # conversations without a message yet (they come last).
        rows = recent + self._select([*where, "last_message_at<?", match], [*params, window, *match_params],
                                     wanted - len(recent), 0)
        if len(rows) < wanted:
            rows += self._select([*where, "last_message_at IS NULL", match], [*params, *match_params],
                                 wanted - len(rows), 0)
        return rows[offset:]

    def _select(self, conditions: Sequence[str], params: Sequence[Any], limit: int,
                offset: int) -> list[dict[str, Any]]:
        return self.sql.all(f"SELECT * FROM conversations WHERE {' AND '.join(conditions)} {RECENT_FIRST} "
                            "LIMIT ? OFFSET ?", [*params, limit, offset])

    def _window(self, where: Sequence[str], params: Sequence[Any]) -> float | None:
        """Where the most recent RECENT_ROWS conversations (of those ``where`` allows) end: their
        oldest last-message time (the window is that range of the recency index, so a scan of it
        stops at the page's last row). None when there is no such range: fewer conversations than
        the window (the scan is quick), or conversations without a message yet within it."""
        base = f"WHERE {' AND '.join(where)}" if where else ""
        edge = self.sql.one(f"SELECT last_message_at AS at FROM conversations {base} {RECENT_FIRST} LIMIT 1 OFFSET ?",
                            [*params, RECENT_ROWS - 1])
        return None if edge is None else edge["at"]

    def candidates(self, term: str, text: str) -> tuple[str, list[Any]] | None:
        """A subquery naming every conversation that may match (and its parameters), or None when
        there are too many for checking them to beat a scan."""
        found = self.sql.column("SELECT rowid FROM conversation_search WHERE conversation_search MATCH ? LIMIT ?",
                                (_phrase(term), MAX_CANDIDATES + 1))
        if len(found) > MAX_CANDIDATES or self.pending() > MAX_CHANGED:
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
