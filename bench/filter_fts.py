"""Benchmark: the console's free-text filter at 100,000 conversations, LIKE scan vs trigram index.

Not a test. Run it from the repository root::

    .venv/bin/python bench/filter_fts.py [--conversations 100000] [--rounds 15] [--db PATH]

It seeds conversations through ``state`` (names, inboxes and Portuguese previews like a shop's
WhatsApp traffic), indexes them, then times every query both ways in the same run, side by side:

- **before**: the filter as it was (the SQL of ``Conversations.page`` before the index: a LIKE
  scan ordered by recency, stopping once the page is full);
- **after**: ``tx.conversations.page(text=...)`` today (recent rows, then the index's candidates,
  else the scan), with the index caught up, and again with 2 % of the conversations changed and
  not indexed yet (the filter then also checks those).

Each figure is the median and 95th percentile of ``--rounds`` runs of the reader's call, on a
read-only connection like the console's. It also times building the index and the upkeep the
index costs (the change triggers on every conversation update, and indexing a batch).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from state import Database, Tx, open_database  # noqa: E402

FIRST = ["Ana", "Bruno", "Carla", "Diego", "Eduarda", "Fábio", "Gabriela", "Hugo", "Íris", "João", "Lúcia", "Marcos",
         "Núbia", "Otávio", "Paula", "Renata", "Sérgio", "Tânia", "Vítor", "Zé", "Maria", "José", "Antônio", "Francisca"]
LAST = ["Silva", "Souza", "Oliveira", "Santos", "Pereira", "Lima", "Carvalho", "Ferreira", "Rodrigues", "Almeida",
        "Costa", "Gomes", "Martins", "Araújo", "Melo", "Barbosa", "Ribeiro", "Alves", "Cardoso", "Teixeira"]
WORDS = ("olá bom dia boa tarde pedido entrega atraso boleto pagamento cartão troca devolução produto tamanho "
         "cor prazo frete cupom desconto nota fiscal endereço horário loja atendimento obrigado quando chega "
         "meu rastreio código não recebi ainda preciso ajuda").split()
CHANNELS = ("whatsapp", "facebook", "instagram", "webwidget", "email")
QUERIES: list[tuple[str, str, dict[str, Any]]] = [
    ("unique order number", "#74219", {}),
    ("unique contact", "Quintino Bocaiúva", {}),
    ("no match", "xylofone", {}),
    ("one inbox (2 %)", "Loja 17", {}),
    ("rare surname pair", "Zé Teixeira", {}),
    ("common surname (5 %)", "Silva", {}),
    ("common word (>50 %)", "pedido", {}),
    ("two common words", "entrega atraso", {}),
    ("conversation number", "48213", {}),
    ("two letters", "ab", {}),
    ("surname + channel", "Silva", {"channel": "email"}),
    ("rare + page 2", "Teixeira", {"offset": 50}),
]


def _old_page(tx: Tx, text: str, channel: str | None = None, limit: int = 51, offset: int = 0) -> list[Any]:
    """The filter before the index, as it was written (state.stores.conversations, before 0005)."""
    where, params = [], []
    if channel:
        where.append("channel=?")
        params.append(channel)
    like = f"%{text.replace('%', '').replace('_', '')}%"
    where.append("(contact_name LIKE ? OR inbox_name LIKE ? OR last_message_preview LIKE ? "
                 "OR CAST(conversation_id AS TEXT)=?)")
    params.extend([like, like, like, text.strip()])
    return tx.sql.all(f"SELECT * FROM conversations WHERE {' AND '.join(where)} ORDER BY last_message_at DESC "
                      "LIMIT ? OFFSET ?", [*params, limit, offset])


def seed(db: Database, count: int, now: float) -> None:
    rng = random.Random(42)
    rows = []
    for n in range(1, count + 1):
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        if n == count // 3:
            name = "Quintino Bocaiúva"
        preview = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14)))
        if n == count // 2:
            preview += " #74219"
        rows.append((1, n, n % 50, f"Loja {n % 50}", CHANNELS[n % len(CHANNELS)], 7000 + n, name, preview[:200],
                     "customer", now - rng.random() * 30 * 86400, now, now))

    def unit(tx: Tx) -> None:
        tx.sql.many("INSERT INTO conversations(account_id, conversation_id, inbox_id, inbox_name, channel, contact_id, "
                    "contact_name, last_message_preview, last_message_role, last_message_at, created_at, updated_at) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    db.write(unit, durable=False)


def _timed(fn: Callable[[], Any], rounds: int) -> tuple[float, float, Any]:
    times, result = [], None
    for _ in range(rounds):
        started = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.95 * len(times)))], result


def _ms(value: float) -> str:
    return f"{value:.1f}" if value >= 1 else f"{value:.2f}"


def run(path: str, count: int, rounds: int) -> list[str]:
    out: list[str] = []
    now = time.time()
    db = open_database(path, migrate=True)
    started = time.perf_counter()
    seed(db, count, now)
    out.append(f"seeded {count:,} conversations in {time.perf_counter() - started:.1f}s")
    started = time.perf_counter()
    batches = []
    while True:
        t0 = time.perf_counter()
        done = db.write(lambda tx: tx.search.index_pending(500), durable=False)
        batches.append((time.perf_counter() - t0) * 1000)
        if done < 500:
            break
    while db.write(lambda tx: tx.search.merge_step(-2000), durable=False):
        pass
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    out.append(f"indexed them in {time.perf_counter() - started:.1f}s ({len(batches)} batches of 500: median "
               f"{statistics.median(batches):.0f} ms) and merged the index into one segment")
    table_bytes = db.read(lambda tx: tx.sql.scalar(
        "SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'conversation_search%'")) if _has_dbstat(db) else None
    out.append(f"database {os.path.getsize(path) / 2**20:.1f} MiB" + (
        f", of which the index {table_bytes / 2**20:.1f} MiB" if table_bytes else ""))
    db.close()

    reader = open_database(path, readonly=True)
    rows = [("query", "text", "rows", "before p50 / p95 ms", "after p50 / p95 ms", "speed-up (p50)")]
    for label, text, filters in QUERIES:
        limit = 51
        kwargs = {"channel": filters.get("channel"), "limit": limit, "offset": filters.get("offset", 0)}
        b50, b95, before = _timed(lambda t=text, k=kwargs: reader.read(lambda tx: _old_page(tx, t, **k)), rounds)
        a50, a95, after = _timed(lambda t=text, k=kwargs: reader.read(lambda tx: tx.conversations.page(text=t, **k)),
                                 rounds)
        # The same rows (the old query had no tie-breaker, so compared as sets).
        assert {(r["account_id"], r["conversation_id"]) for r in before} == {
            (r.account_id, r.conversation_id) for r in after}, label
        rows.append((label, f"`{text}`" + (f" + {filters}" if filters else ""), str(len(after)),
                     f"{_ms(b50)} / {_ms(b95)}", f"{_ms(a50)} / {_ms(a95)}", f"{b50 / a50:.0f}x"))
    reader.close()

    writer = open_database(path)
    rng = random.Random(7)
    changed = sorted({rng.randint(1, count) for _ in range(count // 50)})

    def touch(tx: Tx, numbers: list[int], triggers: bool) -> float:
        if not triggers:  # the same updates without the change triggers (rolled back below)
            for name in ("insert", "update", "delete"):
                tx.sql.execute(f"DROP TRIGGER conversations_search_{name}")
        started = time.perf_counter()
        for number in numbers:
            tx.conversations.upsert(1, number, now, last_message_preview=f"mensagem nova {number}", last_message_at=now)
        return (time.perf_counter() - started) * 1e6 / len(numbers)

    class Undo(Exception):
        pass

    without: list[float] = []
    try:
        with writer.transaction(durable=False) as tx:
            without.append(touch(tx, changed, False))
            raise Undo
    except Undo:
        pass
    per_update = writer.write(touch, changed, True, durable=False)
    pending = writer.read(lambda tx: tx.search.pending())
    started = time.perf_counter()
    indexed = writer.write(lambda tx: tx.search.index_pending(500), durable=False)
    per_indexed = (time.perf_counter() - started) * 1e6 / max(1, indexed)
    writer.write(lambda tx: tx.sql.execute(  # put the 500 back on the list: the figures below need them
        "INSERT INTO search_dirty(id, old_doc) SELECT id, doc FROM conversation_docs WHERE id IN "
        f"({', '.join('?' * min(500, len(changed)))})", changed[:500]), durable=False)
    writer.close()
    reader = open_database(path, readonly=True)
    rows_dirty = [("query", "after, 2 % not indexed yet p50 / p95 ms")]
    for label, text, filters in QUERIES[:6]:
        kwargs = {"channel": filters.get("channel"), "offset": filters.get("offset", 0)}
        a50, a95, _ = _timed(lambda t=text, k=kwargs: reader.read(lambda tx: tx.conversations.page(text=t, **k)),
                             rounds)
        rows_dirty.append((label, f"{_ms(a50)} / {_ms(a95)}"))
    reader.close()
    out.append("")
    out += _table(rows)
    out.append("")
    out.append(f"Upkeep: a conversation update costs {per_update:.0f} µs with the change trigger, "
               f"{without[0]:.0f} µs without; indexing a batch of 500 changed conversations costs "
               f"{per_indexed:.0f} µs per conversation.")
    out.append("")
    out.append(f"{pending:,} conversations changed and not indexed yet:")
    out.append("")
    out += _table(rows_dirty)
    return out


def _has_dbstat(db: Database) -> bool:
    try:
        db.read(lambda tx: tx.sql.scalar("SELECT count(*) FROM dbstat WHERE name='kv'"))
    except Exception:  # noqa: BLE001 - SQLite built without the dbstat table
        return False
    return True


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--db", help="where the database goes (default: a temporary folder, deleted)")
    args = parser.parse_args(argv)
    folder = tempfile.TemporaryDirectory(prefix="filter-bench-")
    path = args.db or os.path.join(folder.name, "filter.db")
    for suffix in ("", "-wal", "-shm"):
        Path(path + suffix).unlink(missing_ok=True)
    import sqlite3

    print(f"SQLite {sqlite3.sqlite_version}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    for line in run(path, args.conversations, args.rounds):
        print(line)
    folder.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
