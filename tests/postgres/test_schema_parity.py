"""Both back-ends' migrations build the same schema: every table, column (its kind, NOT NULL and
default) and index (its columns, uniqueness and partial predicate) of SQLite's is in PostgreSQL's."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg

from state import open_database
from tests import backends

SQLITE_ONLY_TABLES = frozenset({
    # The console filter's full-text index (FTS5, migration 0005) and its shadow tables, and the
    # list of conversations changed since they were indexed (filled by triggers). PostgreSQL's
    # filter is an ILIKE over the conversations themselves (trigram indexes where pg_trgm may be
    # created: state.postgres.migrations.m0005_lifecycle), so it has neither.
    "conversation_search", "conversation_search_data", "conversation_search_idx", "conversation_search_docsize",
    "conversation_search_config", "search_dirty",
})
"""SQLite tables with no PostgreSQL counterpart, on purpose (the view and triggers that feed them
are not tables and are not compared)."""
_KINDS = {"INTEGER": "integer", "REAL": "real", "TEXT": "text",
          "bigint": "integer", "integer": "integer", "double precision": "real", "text": "text"}


def _default(text: str | None) -> str | None:
    """A column default without PostgreSQL's casts (``'auto'::text`` is SQLite's ``'auto'``)."""
    return None if text is None else re.sub(r"::[a-z ]+$", "", text)


def _predicate(sql: str | None) -> str:
    """An index's WHERE clause, normalised (PostgreSQL adds parentheses and casts)."""
    if not sql or " WHERE " not in sql.upper():
        return ""
    where = re.split(r"(?i) WHERE ", sql, maxsplit=1)[1]
    return re.sub(r"[()\s]|::text", "", where).lower()


def _sqlite_schema(path: str) -> tuple[dict[str, dict[str, tuple[str, bool, str | None]]], dict[str, tuple]]:
    db = open_database(path, migrate=True)
    try:
        def read(tx):  # type: ignore[no-untyped-def]
            tables = [r["name"] for r in tx.sql.all(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
                "AND name NOT LIKE '\\_%' ESCAPE '\\'")]
            # Every SQLite-only table is really there: the list does not outlive what it names.
            assert SQLITE_ONLY_TABLES <= set(tables), SQLITE_ONLY_TABLES - set(tables)
            tables = [t for t in tables if t not in SQLITE_ONLY_TABLES]
            columns = {t: {r["name"]: (_KINDS[r["type"]], bool(r["notnull"]) or bool(r["pk"]), r["dflt_value"])
                           for r in tx.sql.all(f"PRAGMA table_info({t})")} for t in tables}
            indexes = {}
            for r in tx.sql.all("SELECT name, tbl_name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL "
                    "AND tbl_name NOT LIKE '\\_%' ESCAPE '\\'"):
                cols = tuple(c["name"] for c in tx.sql.all(f"PRAGMA index_info({r['name']})"))
                unique = "UNIQUE" in r["sql"].upper().split(" ON ")[0]
                indexes[r["name"]] = (r["tbl_name"], cols, unique, _predicate(r["sql"]))
            return columns, indexes
        return db.read(read)
    finally:
        db.close()


def _postgres_schema(url: str) -> tuple[dict[str, dict[str, tuple[str, bool, str | None]]], dict[str, tuple]]:
    open_database(url, migrate=True).close()
    with psycopg.connect(url) as conn:
        columns: dict[str, dict[str, tuple[str, bool, str | None]]] = {}
        for table, name, kind, nullable, default in conn.execute(
                "SELECT table_name, column_name, data_type, is_nullable, column_default FROM information_schema.columns "
                "WHERE table_schema='public' AND table_name<>'schema_migrations'").fetchall():
            identity = default is None and name == "id"
            columns.setdefault(table, {})[name] = (_KINDS[kind], nullable == "NO", None if identity else _default(default))
        indexes = {}
        for name, table, cols, unique, definition in conn.execute(
                "SELECT i.relname, t.relname, array(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY k(n, o) "
                "JOIN pg_attribute a ON a.attrelid=t.oid AND a.attnum=k.n ORDER BY k.o), x.indisunique, "
                "pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid=x.indexrelid "
                "JOIN pg_class t ON t.oid=x.indrelid JOIN pg_namespace s ON s.oid=t.relnamespace "
                "WHERE s.nspname='public' AND NOT x.indisprimary AND i.relname LIKE 'idx\\_%'").fetchall():
            indexes[name] = (table, tuple(cols), unique, _predicate(definition))
    return columns, indexes


def test_both_back_ends_have_the_same_tables_columns_and_indexes(tmp_path: Path) -> None:
    sqlite_columns, sqlite_indexes = _sqlite_schema(str(tmp_path / "c.db"))
    pg_columns, pg_indexes = _postgres_schema(backends.state_location(tmp_path, backends.POSTGRES))
    assert set(pg_columns) == set(sqlite_columns)
    for table, columns in sqlite_columns.items():
        assert pg_columns[table] == columns, table
    # The named indexes (UNIQUE columns and primary keys are constraints on both, compared above
    # as columns); a partial index's predicate is part of what it means.
    assert pg_indexes == sqlite_indexes
    assert sqlite_indexes["idx_handoffs_waiting"][3] == "human_replied_atisnullandreminded_atisnull"
