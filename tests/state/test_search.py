"""The console's free-text filter over the trigram index finds exactly what the LIKE scan finds."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

import state.sqlite.search as search
from state import Database, Tx, open_database
from state.stores.conversations import Conversations

NAMES = ["José Silva", "JOSÉ SILVA", "jose silva", "João Gonçalves", "Ana 100% Real", "under_score Bob",
         'Say "hi" Maria', "Zoë Émile", "ÉMILE zoë", "Müller", "MÜLLER", "Ångström Lab", "李雷", "O'Brien",
         "Carla\tTab", "   ", ""]
INBOXES = ["Loja Centro", "Suporte Técnico", "WhatsApp Vendas", "Site", "suporte técnico"]
WORDS = ["pedido", "Pedido", "PEDIDO", "entrega", "atraso", "ação", "AÇÃO", "troca", "#48649", "100%", "a_b",
         "naïve", "café", "CAFÉ", "Straße", "strasse", '"quoted"', "x"]
QUERIES = ["jose", "José", "JOSÉ", "josé silva", "silva", "SILVA", "ão", "joão", "JOÃO", "gonçalves",
           "100%", "100", "%", "_", "a_b", "ab", "under_score", 'say "hi"', '"', "zoë", "ZOË", "émile", "ÉMILE",
           "müller", "MÜLLER", "ångström", "李雷", "o'brien", "loja", "técnico", "TÉCNICO", "suporte t",
           "pedido", "PEDIDO", "ação", "AÇÃO", "café", "straße", "STRASSE", "#48649", "48649", "7", "42", "0042",
           "entrega atraso", "quoted", "nothing-like-this", "x", "xx", "ae", " silva ", "Tab", "carla\ttab"]


def _seed(db: Database, count: int, rng: random.Random) -> None:
    def unit(tx: Tx) -> None:
        for n in range(1, count + 1):
            preview = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 6)))
            tx.conversations.upsert(1 + n % 2, n, 1000.0 + rng.random() * 100, contact_name=rng.choice(NAMES),
                                    inbox_name=rng.choice(INBOXES), last_message_preview=preview,
                                    channel=rng.choice(["whatsapp", "email"]),
                                    last_message_at=None if n % 23 == 0 else float(rng.randint(0, 400)))
    db.write(unit)


def _ids(rows: list[Any]) -> list[tuple[int, int]]:
    return [(r.account_id, r.conversation_id) for r in rows]


def _both(db: Database, text: str, **filters: Any) -> tuple[list[Any], list[Any]]:
    """(through the index, by the plain LIKE scan) for the same filter."""
    def read(tx: Tx) -> tuple[list[Any], list[Any]]:
        indexed = tx.conversations.page(text=text, **filters)
        scanned = Conversations(tx.sql).page(text=text, **filters)
        return _ids(indexed), _ids(scanned)
    return db.read(read)


@pytest.fixture
def seeded(tmp_path: Path) -> Database:
    db = open_database(str(tmp_path / "s.db"), migrate=True)
    _seed(db, 400, random.Random(7))
    yield db
    db.close()


@pytest.mark.parametrize("phase", ["nothing indexed yet", "all indexed", "partly changed since"])
def test_every_query_finds_what_the_like_scan_finds(seeded: Database, phase: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Case of A-Z ignored, accents and the case of accented letters kept, % and _ literal, the
    conversation number: the same rows in the same order as LIKE, before, after and while the
    index catches up, through every path (recent rows, candidates, scan)."""
    if phase != "nothing indexed yet":
        while seeded.write(lambda tx: tx.search.index_pending(64)):
            pass
    if phase == "partly changed since":
        rng = random.Random(11)
        _seed_changes = [(1 + n % 2, n, rng.choice(NAMES), rng.choice(WORDS)) for n in range(1, 401, 3)]

        def change(tx: Tx) -> None:
            for account, number, name, word in _seed_changes:
                tx.conversations.upsert(account, number, 2000.0, contact_name=name, last_message_preview=word)
        seeded.write(change)
        assert seeded.read(lambda tx: tx.search.pending()) > 0
    taken: dict[str, int] = {}
    select = search.SqliteSearch._select

    def spy(self: search.SqliteSearch, conditions: Any, *args: Any) -> Any:
        path = ("candidates" if conditions[0].startswith("id IN") else "after the window"
                if "last_message_at<?" in conditions else "window" if "last_message_at>=?" in conditions else "scan")
        taken[path] = taken.get(path, 0) + 1
        return select(self, conditions, *args)
    monkeypatch.setattr(search.SqliteSearch, "_select", spy)
    for recent, scan, candidates, changed in ((search.RECENT_ROWS, search.SCAN_ROWS, search.MAX_CANDIDATES,
                                                search.MAX_CHANGED), (10, 0, 1000, 1000), (1, 0, 30, 1000),
                                               (50, 0, 1000, 10), (100, 40, 1000, 1000)):
        monkeypatch.setattr(search, "RECENT_ROWS", recent)
        monkeypatch.setattr(search, "SCAN_ROWS", scan)
        monkeypatch.setattr(search, "MAX_CANDIDATES", candidates)
        monkeypatch.setattr(search, "MAX_CHANGED", changed)
        for query in QUERIES:
            for filters in ({}, {"channel": "whatsapp"}, {"limit": 7, "offset": 7}, {"limit": 3, "offset": 40}):
                indexed, scanned = _both(seeded, query, **filters)
                assert indexed == scanned, (query, filters, recent, scan, candidates, changed)
    assert set(taken) == {"candidates", "after the window", "window", "scan"}, taken  # every path was taken


def test_case_and_accents_follow_like(seeded: Database) -> None:
    """What the console promised: A-Z in any case; an accent must be typed (as LIKE on SQLite)."""
    while seeded.write(lambda tx: tx.search.index_pending(500)):
        pass

    def names(text: str) -> set[str]:
        return seeded.read(lambda tx: {c.contact_name for c in tx.conversations.page(text=text, limit=1000)})
    assert names("jose silva") == {"jose silva"}
    assert names("josé silva") == {"José Silva"}
    assert names("JOSÉ") == {"JOSÉ SILVA"}
    assert names("SILVA") == {"José Silva", "JOSÉ SILVA", "jose silva"}
    assert names("100%") == names("100")
    assert "Ana 100% Real" in names("100%")


def test_a_number_finds_its_conversation(seeded: Database) -> None:
    """A conversation's number finds it even with the number nowhere in its texts."""
    rows = seeded.read(lambda tx: tx.conversations.page(text="42", limit=1000))
    assert (1, 42) in _ids(rows)


@pytest.mark.sqlite_only
def test_index_keeps_up_with_changes_and_merges(tmp_path: Path) -> None:
    db = open_database(str(tmp_path / "i.db"), migrate=True)
    try:
        _index_keeps_up_with_changes_and_merges(db)
    finally:
        db.close()


def _index_keeps_up_with_changes_and_merges(db: Database) -> None:
    """The triggers note every change; indexing takes the old text out and puts the new one in."""
    db.write(lambda tx: tx.conversations.upsert(1, 1, 1.0, contact_name="Alice Wonder", last_message_at=1.0))
    assert db.read(lambda tx: tx.search.pending()) == 1
    assert db.write(lambda tx: tx.search.index_pending(100)) == 1
    assert db.read(lambda tx: tx.search.pending()) == 0
    db.write(lambda tx: tx.conversations.upsert(1, 1, 2.0, last_message_at=2.0))  # text unchanged: no work
    assert db.read(lambda tx: tx.search.pending()) == 0
    db.write(lambda tx: tx.conversations.upsert(1, 1, 3.0, contact_name="Bob Builder"))
    db.write(lambda tx: tx.conversations.upsert(1, 1, 4.0, contact_name="Carol Singer"))
    assert db.read(lambda tx: tx.search.pending()) == 1
    db.write(lambda tx: tx.search.index_pending(100))

    def indexed(term: str) -> list[int]:
        return db.read(lambda tx: tx.sql.column(
            "SELECT rowid FROM conversation_search WHERE conversation_search MATCH ?", (f'"{term}"',)))
    assert indexed("Alice") == [] and indexed("Bob") == [] and len(indexed("Carol")) == 1
    for n in range(20):
        db.write(lambda tx, n=n: tx.conversations.upsert(1, 1, 5.0, last_message_preview=f"message {n}"))
        db.write(lambda tx: tx.search.index_pending(100))
    while db.write(lambda tx: tx.search.merge_step(-64)):
        pass
    assert db.read(lambda tx: tx.sql.scalar(
        "SELECT count(*) FROM conversation_search_data WHERE id > 10")) <= 2  # one segment left
    assert db.write(lambda tx: tx.sql.execute(
        "INSERT INTO conversation_search(conversation_search) VALUES ('integrity-check')")) is not None


def _postgres(tmp_path: Path, *, refuse_extensions: bool = False) -> Database:
    """A migrated PostgreSQL state; ``refuse_extensions``: its role may not create pg_trgm there
    (CREATE on the database revoked, as a DBA would), so the migration must go on without it."""
    import psycopg

    from tests import backends

    url = backends.state_location(tmp_path, backends.POSTGRES)
    if refuse_extensions:
        with psycopg.connect(url, autocommit=True) as conn:
            if conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname=current_user").fetchone()[0]:
                pytest.skip("the test server's role is a superuser: nothing can be refused to it")
            name = conn.execute("SELECT current_database()").fetchone()[0]
            conn.execute(f'REVOKE CREATE ON DATABASE "{name}" FROM PUBLIC, CURRENT_USER')
    return open_database(url, migrate=True)


def _has_trigram(db: Database) -> bool:
    from state.postgres.migrations import has_trigram_indexes

    return db.read(lambda tx: has_trigram_indexes(tx.sql.conn))


def test_postgres_filter_is_answered_from_trigram_indexes(tmp_path: Path) -> None:
    db = _postgres(tmp_path)
    try:
        assert _has_trigram(db)
        _seed(db, 400, random.Random(7))
        from state.sql import POSTGRESQL
        from state.stores.conversations import text_match

        clause, params = text_match(POSTGRESQL, "silva")

        def plan(tx: Tx) -> str:
            tx.sql.execute("SET enable_seqscan = off")  # the planner's choice at 400 rows is not the point
            try:
                return "\n".join(str(r) for r in tx.sql.all(f"EXPLAIN SELECT id FROM conversations WHERE {clause}",
                                                             params))
            finally:
                tx.sql.execute("RESET enable_seqscan")
        shown = db.read(plan)
        assert "trgm_conversations_contact_name" in shown and "trgm_conversations_number_text" in shown, shown
        found = db.read(lambda tx: _ids(tx.conversations.page(text="silva", limit=1000)))
        assert found and len(found) == len(set(found))
    finally:
        db.close()


def test_postgres_without_pg_trgm_the_filter_scans_and_finds_the_same(tmp_path: Path) -> None:
    db = _postgres(tmp_path, refuse_extensions=True)
    try:
        assert not _has_trigram(db)
        _seed(db, 120, random.Random(3))
        found = db.read(lambda tx: _ids(tx.conversations.page(text="JOSÉ", limit=1000)))
        expected = db.read(lambda tx: [(r["account_id"], r["conversation_id"]) for r in tx.sql.all(
            "SELECT account_id, conversation_id FROM conversations WHERE contact_name ILIKE '%josé%' "
            "OR inbox_name ILIKE '%josé%' OR last_message_preview ILIKE '%josé%' "
            "ORDER BY last_message_at DESC NULLS LAST, id")])
        assert found == expected and found
    finally:
        db.close()
