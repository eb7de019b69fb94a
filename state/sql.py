"""Provides Sql: one database connection of either back-end, behind one small interface.

Every query in ``state`` is written once, in the common subset of SQLite's and PostgreSQL's SQL
with ``?`` placeholders; :class:`Dialect` turns ``?`` into ``%s`` for PostgreSQL and names the few
things the two spell differently (``min(a, b)`` vs ``LEAST``, the change marker, case-insensitive
matching). The stores (``state/stores``) see only :class:`Sql`, so a store is written once and runs
on both back-ends; where the two must behave differently (claiming jobs with ``SKIP LOCKED``), the
store asks ``sql.dialect``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

try:  # a compiled JSON codec where installed (a dependency), the standard one otherwise
    import orjson

    def dumps(value: Any) -> str:
        """Compact JSON text (UTF-8, no spaces), as stored in every JSON column."""
        return orjson.dumps(value).decode()

    def loads(text: str | bytes) -> Any:
        return orjson.loads(text)

except ImportError:  # pragma: no cover - orjson is a pinned dependency
    def dumps(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    def loads(text: str | bytes) -> Any:
        return json.loads(text)


def loads_or(text: str | bytes | None, default: Any) -> Any:
    """JSON from a column, or ``default`` when it is empty or not JSON (never raises)."""
    if not text:
        return default
    try:
        return loads(text)
    except ValueError:
        return default


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between the back-ends' SQL."""

    name: str
    """``sqlite`` or ``postgresql``."""
    skip_locked: bool
    """Claims lock the rows they take and skip rows others hold (``FOR UPDATE SKIP LOCKED``)."""
    least: str
    """The two-argument minimum: ``min`` (SQLite) or ``LEAST`` (PostgreSQL)."""
    like: str
    """Case-insensitive LIKE: SQLite's LIKE is (for ASCII), PostgreSQL needs ILIKE."""
    for_update: str = ""
    """Locks the rows a read-then-write reads (``FOR UPDATE``); SQLite's single writer needs none."""
    nulls_last: str = ""
    """After ``DESC``: NULLs last, where SQLite puts them anyway (NULL sorts lowest there)."""

    def minute_bucket(self, column: str) -> str:
        """The start of ``column``'s minute (epoch seconds) as an integer."""
        if self.name == "postgresql":
            return f"(floor({column} / 60) * 60)::bigint"
        return f"CAST({column} / 60 AS INTEGER) * 60"


SQLITE = Dialect("sqlite", skip_locked=False, least="min", like="LIKE")
POSTGRESQL = Dialect("postgresql", skip_locked=True, least="LEAST", like="ILIKE", for_update=" FOR UPDATE",
                     nulls_last=" NULLS LAST")


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ...) -> Cursor: ...


class Sql:
    """Runs the stores' statements on one connection (a row comes back as a dict)."""

    __slots__ = ("conn", "dialect", "_translate", "_cache", "_tuple_rows")

    def __init__(self, conn: Any, dialect: Dialect, *, tuple_rows: Any = None) -> None:
        """``tuple_rows``: the connection's row factory for plain tuples, where its rows are
        dicts by default (psycopg's ``tuple_row``); :meth:`row` uses it."""
        self.conn = conn
        self.dialect = dialect
        self._translate = dialect.name == "postgresql"
        self._cache: dict[str, str] = {}
        self._tuple_rows = tuple_rows

    def _text(self, sql: str) -> str:
        if not self._translate:
            return sql
        text = self._cache.get(sql)
        if text is None:
            # psycopg's placeholders are %s, and a literal % must be doubled.
            text = self._cache[sql] = sql.replace("%", "%%").replace("?", "%s")
        return text

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Runs one statement; returns the number of rows it changed."""
        return self.conn.execute(self._text(sql), params).rowcount

    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        if self._translate:
            with self.conn.cursor() as cur:
                cur.executemany(self._text(sql), list(rows))
        else:
            self.conn.executemany(sql, rows)

    def one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        row = self.conn.execute(self._text(sql), params).fetchone()
        return None if row is None else _as_dict(row)

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return [_as_dict(r) for r in self.conn.execute(self._text(sql), params).fetchall()]

    def row(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        """The first row as a tuple (cheaper than a dict on hot paths), every column kept even
        when two share a name (PostgreSQL calls each unnamed ``count(*)`` "count")."""
        # fetchall, not fetchone: an UPDATE ... RETURNING must run to completion before the
        # transaction can commit.
        if self._tuple_rows is not None:
            with self.conn.cursor(row_factory=self._tuple_rows) as cur:
                rows = cur.execute(self._text(sql), params).fetchall()
        else:
            rows = self.conn.execute(self._text(sql), params).fetchall()
        return tuple(rows[0]) if rows else None

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row, or None."""
        row = self.row(sql, params)
        return None if row is None else row[0]

    def column(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        rows = self.conn.execute(self._text(sql), params).fetchall()
        return [next(iter(r.values())) if isinstance(r, dict) else r[0] for r in rows]


def _as_dict(row: Any) -> dict[str, Any]:
    return row if isinstance(row, dict) else dict(row)


def marks(count: int) -> str:
    """``?, ?, ?`` for an IN list of ``count`` values."""
    return ", ".join("?" * count)
