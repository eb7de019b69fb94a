"""Benchmark: refresh time of each console screen over 100,000 conversations and 1M messages.

Not a test. Run it from the repository root::

    .venv/bin/python bench/console_refresh.py [--db /tmp/console-bench.db] [--keep]

It seeds a database through ``state`` (big transactions, ``executemany`` on the documented
tables), then drives the real app headless and, for every screen, times the query (the
reader call a refresh worker makes) and the table update (``show()`` on the UI thread plus
the repaint), printing the median and 95th percentile of each.
"""

from __future__ import annotations

import argparse
import asyncio
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

from console.app import ConsoleApp, make_console  # noqa: E402
from console.screens.base import LiveScreen  # noqa: E402
from console.screens.detail import ConversationDetailScreen  # noqa: E402
from console.settings import ConsoleSettings  # noqa: E402
from console.snapshots import ConversationQuery  # noqa: E402
from state import open_database  # noqa: E402

CONVERSATIONS = 100_000
MESSAGES = 1_000_000
JOBS_PER_CONVERSATION = 2
DEAD_LETTERS = 1_000
BATCH = 50_000
CHANNELS = ("whatsapp", "facebook", "instagram", "webwidget", "api", "email", "telegram")
CREWS = ("vendas", "suporte", "faq", "financeiro")
OWNERS = ("bot",) * 8 + ("human", "paused")
ROUNDS = 30


def _batched(rows: Any, size: int = BATCH) -> Any:
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def seed(path: str, now: float) -> None:
    """Bulk-seeds the documented tables through state's writer transactions."""
    rng = random.Random(42)
    store = open_database(path, migrate=True)
    month = 30 * 86400.0
    last_at = {c: now - rng.random() * month for c in range(1, CONVERSATIONS + 1)}

    def conversations() -> Any:
        for c, at in last_at.items():
            yield (1, c, c % 50, f"Inbox {c % 50}", CHANNELS[c % len(CHANNELS)], "Channel::Api",
                   c, f"Contact {c} [{rng.choice('abc')}]", "{}", "open", "[]", 1,
                   OWNERS[c % len(OWNERS)], "", at, CREWS[c % len(CREWS)], at,
                   f"last message of {c} " + "x" * 40, "customer", at, at - 3600, at)

    def messages() -> Any:
        per = MESSAGES // CONVERSATIONS
        mid = 0
        for c, at in last_at.items():
            for k in range(per):
                mid += 1
                role = ("customer", "bot", "customer", "agent", "note")[k % 5]
                yield (1, c, mid, role, "contact" if role == "customer" else "user", None,
                       f"message {k} of conversation {c}: " + "lorem ipsum " * 6, "text", "[]",
                       int(role == "note"), f"h{mid}", None, at - (per - k) * 30)

    def deliveries() -> Any:
        # One delivery per customer message; the newest fall into the overview's last hour.
        for i in range(MESSAGES // 2):
            at = now - (i * month / (MESSAGES // 2)) if i > 3000 else now - i * 1.2
            yield (f"d{i}", f"k{i}", "message_created", "accepted", "", at, 1,
                   1 + i % CONVERSATIONS, i, "{}")

    def jobs() -> Any:
        jid = 0
        for c, at in last_at.items():
            for k in range(JOBS_PER_CONVERSATION):
                jid += 1
                dead = jid <= DEAD_LETTERS
                state = "dead" if dead else "done"
                yield (jid, f"req-{jid}", 1, c, state, f"[{jid}]", at - 60 * k, at - 60 * k, 2, 0,
                       CREWS[c % len(CREWS)], "http", "rules", "matched keyword", 0.8,
                       "crew failed: HTTP 503" if dead else "", "failed" if dead else "answered",
                       at - 60 * k, at - 60 * k, at - 60 * k + 2)

    with store.transaction() as tx:
        for batch in _batched(conversations()):
            tx.conn.executemany(
                "INSERT INTO conversations(account_id, conversation_id, inbox_id, inbox_name, channel,"
                " channel_type, contact_id, contact_name, contact_json, status, labels, can_reply, owner,"
                " owner_reason, owner_changed_at, crew, last_message_at, last_message_preview,"
                " last_message_role, last_activity_at, created_at, updated_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", batch)
    print(f"  conversations: {CONVERSATIONS:,}", flush=True)
    for batch in _batched(messages(), 200_000):
        with store.transaction() as tx:
            tx.conn.executemany(
                "INSERT INTO messages(account_id, conversation_id, message_id, role, sender_type,"
                " sender_id, content, content_type, attachments, private, content_hash, job_id,"
                " created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", batch)
    print(f"  messages: {MESSAGES:,}", flush=True)
    for batch in _batched(deliveries(), 200_000):
        with store.transaction() as tx:
            tx.conn.executemany(
                "INSERT INTO deliveries(delivery_id, dedup_key, event, outcome, reason, received_at,"
                " account_id, conversation_id, message_id, body) VALUES (?,?,?,?,?,?,?,?,?,?)", batch)
    print(f"  deliveries: {MESSAGES // 2:,}", flush=True)
    with store.transaction() as tx:
        for batch in _batched(jobs()):
            tx.conn.executemany(
                "INSERT INTO jobs(id, request_id, account_id, conversation_id, state, message_ids,"
                " first_message_at, run_at, attempts, apply_attempts, crew, backend, route_source,"
                " route_reason, route_confidence, last_error, outcome, created_at, updated_at,"
                " finished_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", batch)
            tx.conn.executemany(
                "INSERT INTO routing_decisions(job_id, account_id, conversation_id, crew, source,"
                " reason, confidence, decided_at) VALUES (?,?,?,?,?,?,?,?)",
                [(r[0], 1, r[3], r[10], r[12], r[13], r[14], r[6]) for r in batch])
            tx.conn.executemany(
                "INSERT INTO crew_attempts(job_id, request_id, crew, backend, attempt, started_at,"
                " duration, outcome, status_code, error) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [(r[0], r[1], r[10], "http", 1, r[6], 0.5 + (r[0] % 7) / 3, r[16], 200, "")
                 for r in batch])
        tx.put_kv("config.effective", {"health": {"probe_interval_seconds": 15}})
    jobs_total = CONVERSATIONS * JOBS_PER_CONVERSATION
    print(f"  jobs, routing decisions, crew attempts: {jobs_total:,} each "
          f"({DEAD_LETTERS:,} dead letters)", flush=True)
    store.close()


def _ms(values: list[float]) -> str:
    p95 = statistics.quantiles(values, n=20)[18] if len(values) >= 2 else values[0]
    return f"{statistics.median(values) * 1000:8.1f} {p95 * 1000:8.1f}"


async def measure(app: ConsoleApp) -> list[tuple[str, list[float], list[float], list[float]]]:
    results: list[tuple[str, list[float], list[float], list[float]]] = []
    async with app.run_test(size=(120, 36)) as pilot:

        async def run(label: str, screen: LiveScreen, setup: Callable[[], None] | None = None) -> None:
            if setup is not None:
                setup()
            # Stop the screen's own poller so it does not compete with the measured refreshes.
            screen._busy = True
            queries, shows, updates = [], [], []
            for _ in range(ROUNDS):
                args = screen.query_args()
                t0 = time.perf_counter()
                data = screen.fetch(args)
                t1 = time.perf_counter()
                screen.show(data)
                t2 = time.perf_counter()
                await pilot.pause()  # lets the repaint happen before the clock stops
                t3 = time.perf_counter()
                queries.append(t1 - t0)
                shows.append(t2 - t1)
                updates.append(t3 - t1)
            screen._busy = False
            results.append((label, queries, shows, updates))

        await pilot.pause()
        for key, mode in (("1", "overview"), ("3", "routing"), ("4", "dead"), ("5", "config")):
            await pilot.press(key)
            await app.workers.wait_for_complete()
            await run(mode, app.screen)  # type: ignore[arg-type]
        await pilot.press("2")
        await app.workers.wait_for_complete()
        conv = app.screen
        assert isinstance(conv, LiveScreen)

        def filt(**kw: Any) -> Callable[[], None]:
            return lambda: setattr(conv, "filters", ConversationQuery(**kw))

        await run("conversations, page 1", conv, filt())
        await run("conversations, page 200", conv, filt(page=199))
        await run("conversations, channel+owner", conv, filt(channel="telegram", owner="paused"))
        await run("conversations, crew filter", conv, filt(crew="faq"))
        await run("conversations, text (rare)", conv, filt(text="Contact 99999 "))
        await run("conversations, text (none)", conv, filt(text="no-such-text"))
        detail = ConversationDetailScreen(app.ctx, 1, 4242)
        await app.push_screen(detail)
        await app.workers.wait_for_complete()
        await run("conversation detail", detail)
        t_versions = []
        for _ in range(200):
            t0 = time.perf_counter()
            app.ctx.reader.data_version()
            t_versions.append(time.perf_counter() - t0)
        results.append(("poll (PRAGMA data_version)", t_versions, [0.0, 0.0], [0.0, 0.0]))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="where to build the database (default: a temp file)")
    parser.add_argument("--keep", action="store_true", help="reuse/keep the database")
    args = parser.parse_args()
    path = args.db or os.path.join(tempfile.mkdtemp(prefix="console-bench-"), "connector.db")
    now = time.time()
    if not (args.keep and os.path.exists(path)):
        if os.path.exists(path):
            os.remove(path)
        print(f"seeding {path} ...", flush=True)
        started = time.perf_counter()
        seed(path, now)
        print(f"seeded in {time.perf_counter() - started:.1f}s, "
              f"{os.path.getsize(path) / 1e6:,.0f} MB", flush=True)
    app = make_console(ConsoleSettings(db_path=path, refresh_seconds=1.0), clock=lambda: now)
    results = asyncio.run(measure(app))
    print()
    head = f"screen refresh, ms ({ROUNDS} rounds)"
    print(f"{head:<36} {'query':^17} {'show()':^17} {'show+repaint':^17}")
    print(f"{'':<36}" + f" {'median':>8} {'p95':>8}" * 3)
    for label, queries, shows, updates in results:
        print(f"{label:<36} {_ms(queries)} {_ms(shows)} {_ms(updates)}")
    if not args.keep:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
    return 0


if __name__ == "__main__":
    sys.exit(main())
