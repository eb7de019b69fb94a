"""Benchmark: what retention costs: one pruning batch per kind, giving space back, and intake and
console reads while a whole pass runs.

Not a test. Run it from the repository root::

    .venv/bin/python bench/retention_cost.py [--deliveries 100000] [--seconds 20] [--rate 200]

It seeds a state with a month of old rows (applied deliveries with realistic ~2.5 KB bodies,
finished jobs with their attempts and actions, messages, decisions, outcomes) through ``state``,
then:

1. times single batches of each kind at several batch sizes (what one pause of the writer costs);
2. runs the sidecar's own ``RetentionLoop`` pass (the default config: batches up to 500 rows sized
   to about 5 ms, paced) through the
   sidecar's ``SqliteService`` while a simulated intake commits webhook rows at ``--rate`` per
   second through the same writer (durable, urgent: exactly what ``POST /webhook/chatwoot`` waits
   for) and a console-like reader refreshes the conversations page 10 times a second; and again
   with no pass running. The intake's commit latency and the reader's refresh time are printed
   side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connector_config import Config  # noqa: E402
from sidecar.ops.metrics import Metrics  # noqa: E402
from sidecar.ops.retention import RetentionLoop  # noqa: E402
from sidecar.queue.pacing import Pacing  # noqa: E402
from state import Database, Tx, open_database, open_service  # noqa: E402
from state.retention import DAY, prune_batch  # noqa: E402

BODY = json.dumps({"event": "message_created", "id": 0, "content": "olá, meu pedido ainda não chegou " * 8,
                   "message_type": "incoming", "private": False, "sender": {"id": 1, "name": "Cliente",
                   "phone_number": "+5511999999999", "type": "contact"},
                   "conversation": {"id": 1, "status": "pending", "channel": "Channel::Whatsapp",
                                    "meta": {"sender": {"id": 1}}, "messages": [{"content": "x" * 600}]},
                   "account": {"id": 1, "name": "Loja"}, "inbox": {"id": 21, "name": "WhatsApp"}})


def seed(db: Database, deliveries: int, now: float) -> None:
    old = now - 40 * DAY
    rng = random.Random(1)
    per = 50_000
    for start in range(0, deliveries, per):
        rows = [(f"d{n}", f"k{n}", "message_created", "accepted", "", old + rng.random() * DAY, 1, n % 5000, n, BODY)
                for n in range(start, min(deliveries, start + per))]
        db.write(lambda tx, rows=rows: tx.sql.many(
            "INSERT INTO deliveries(delivery_id, dedup_key, event, outcome, reason, received_at, account_id, "
            "conversation_id, message_id, body) VALUES (?,?,?,?,?,?,?,?,?,?)", rows), durable=False)
    jobs = deliveries // 4

    def work(tx: Tx) -> None:
        tx.sql.many("INSERT INTO jobs(id, request_id, account_id, conversation_id, state, message_ids, first_message_at, "
                    "run_at, attempts, envelope, actions, created_at, updated_at, finished_at) "
                    "VALUES (?,?,1,?,'done','[1]',?,?,1,?,?,?,?,?)",
                    [(j, f"r{j}", j % 5000, old, old, BODY[:1500], '[{"type":"reply","content":"ok"}]', old, old, old)
                     for j in range(1, jobs + 1)])
        tx.sql.many("INSERT INTO crew_attempts(job_id, request_id, crew, backend, attempt, started_at, duration, "
                    "outcome, status_code, error) VALUES (?,?,'c','http',1,?,0.5,'answered',200,'')",
                    [(j, f"r{j}", old) for j in range(1, jobs + 1)])
        tx.sql.many("INSERT INTO actions_applied(job_id, idx, kind, account_id, conversation_id, content_hash, state, "
                    "started_at) VALUES (?,0,'reply',1,?,'h','done',?)", [(j, j % 5000, old) for j in range(1, jobs + 1)])
        tx.sql.many("INSERT INTO routing_decisions(job_id, account_id, conversation_id, crew, source, reason, "
                    "decided_at) VALUES (?,1,?,'c','rules','matched',?)", [(j, j % 5000, old) for j in range(1, jobs + 1)])
        tx.sql.many("INSERT INTO outcomes(at, account_id, conversation_id, crew, rule, kind, value) "
                    "VALUES (?,1,?,'c','','answered',1.0)", [(old, j % 5000) for j in range(1, jobs + 1)])
        tx.sql.many("INSERT INTO messages(account_id, conversation_id, message_id, role, content, created_at) "
                    "VALUES (1,?,?,'customer',?,?)",
                    [(n % 5000, n, "olá, meu pedido ainda não chegou", old - 60 * DAY) for n in range(deliveries)])
        tx.sql.many("INSERT INTO conversations(account_id, conversation_id, contact_name, last_message_preview, "
                    "last_message_at, created_at, updated_at) VALUES (1,?,?,?,?,?,?)",
                    [(c, f"Cliente {c}", "olá", now - c, now, now) for c in range(5000)])
    db.write(work, durable=False)
    while db.write(lambda tx: tx.search.index_pending(5000), durable=False):
        pass


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def batch_costs(db: Database, now: float, sizes: tuple[int, ...]) -> list[str]:
    lines = ["| kind | rows per batch | batch p50 ms | batch p95 ms |", "|---|---|---|---|"]
    for kind, before in (("deliveries", now - 7 * DAY), ("jobs", now - 30 * DAY), ("messages", now - 90 * DAY),
                         ("decisions", now - 30 * DAY), ("outcomes", now - 30 * DAY)):
        for size in sizes:
            times, rows = [], 0
            for _ in range(5):
                started = time.perf_counter()
                rows += db.write(lambda tx, k=kind, b=before, s=size: prune_batch(tx, k, b, s), durable=False)
                times.append((time.perf_counter() - started) * 1000)
            assert rows == 5 * size, f"seed more rows: {kind} ran out"
            lines.append(f"| {kind} | {size} | {statistics.median(times):.1f} | {percentile(times, 0.95):.1f} |")
    return lines


async def intake_and_console(path: str, seconds: float, rate: float, prune: bool) -> dict[str, Any]:
    service = open_service(path)
    metrics = Metrics()
    pacing = Pacing()
    pacing.start()
    config = Config()
    loop = RetentionLoop(config=lambda: config, state=service, metrics=metrics, pacing=pacing, owner="bench")
    latencies: list[float] = []
    reads: list[float] = []
    stop = threading.Event()

    def console() -> None:
        reader = open_database(path, readonly=True)
        while not stop.is_set():
            started = time.perf_counter()
            reader.read(lambda tx: (tx.conversations.page(limit=51), tx.jobs.stats(), tx.journal.backlog()))
            reads.append((time.perf_counter() - started) * 1000)
            stop.wait(0.1)
        reader.close()

    def journal(tx: Tx, n: int) -> bool:
        return tx.journal.insert(delivery_id=f"live-{prune}-{n}", dedup_key=f"live-{prune}-{n}", event="message_created",
                                 received_at=time.time(), account_id=1, conversation_id=1, message_id=None, body=BODY)

    async def one(n: int) -> None:
        started = time.perf_counter()
        await service.write(journal, n, durable=True, urgent=True)
        latencies.append((time.perf_counter() - started) * 1000)

    reader_thread = threading.Thread(target=console)
    reader_thread.start()
    pass_task = asyncio.create_task(loop.pass_once()) if prune else None
    report = None
    started = time.monotonic()
    tasks = []
    n = 0
    while time.monotonic() - started < seconds:
        tasks.append(asyncio.create_task(one(n)))
        n += 1
        await asyncio.sleep(1 / rate)  # the arrival schedule of the simulated intake
    await asyncio.gather(*tasks)
    if pass_task is not None:
        report = await pass_task
    stop.set()
    reader_thread.join()
    pacing.stop()
    await asyncio.to_thread(service.close)
    return {"p50": statistics.median(latencies), "p99": percentile(latencies, 0.99), "max": max(latencies),
            "reads_p50": statistics.median(reads), "reads_p95": percentile(reads, 0.95), "report": report,
            "count": len(latencies)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--batch-sizes", default="50,200,500", help="rows per batch timed for each kind")
    args = parser.parse_args(argv)
    import sqlite3

    print(f"SQLite {sqlite3.sqlite_version}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="retention-bench-") as folder:
        path = os.path.join(folder, "state.db")
        now = time.time()
        db = open_database(path, migrate=True)
        started = time.perf_counter()
        seed(db, args.deliveries, now)
        db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        print(f"seeded {args.deliveries:,} old deliveries, {args.deliveries // 4:,} jobs (with attempts, actions, "
              f"decisions, outcomes) and {args.deliveries:,} messages in {time.perf_counter() - started:.0f}s: "
              f"{os.path.getsize(path) / 2**20:.0f} MiB")
        print()
        for line in batch_costs(db, now, tuple(int(n) for n in args.batch_sizes.split(","))):
            print(line)
        steps = []
        for _ in range(20):
            t0 = time.perf_counter()
            if not db.give_back(256):
                break
            steps.append((time.perf_counter() - t0) * 1000)
        if steps:
            print(f"\ngiving back 256 pages (1 MiB): p50 {statistics.median(steps):.1f} ms, "
                  f"p95 {percentile(steps, 0.95):.1f} ms per step")
        db.close()
        quiet = asyncio.run(intake_and_console(path, args.seconds, args.rate, prune=False))
        busy = asyncio.run(intake_and_console(path, args.seconds, args.rate, prune=True))
        report = busy["report"] or {}
        size_after = os.path.getsize(path) / 2**20
        print(f"\nA whole pass (the default config: batches of up to 500 rows sized to ~5 ms, paced) during {args.seconds:.0f} s of intake at {args.rate:.0f}/s "
              f"and console refreshes at 10/s: it pruned {sum((report.get('pruned') or {}).values()):,} rows in "
              f"{report.get('batches', 0)} batches and gave back {report.get('pages_given_back', 0):,} pages in "
              f"{report.get('seconds', 0):.1f} s (slowest batch {report.get('slowest_batch_ms', 0):.0f} ms); the file "
              f"is {size_after:.0f} MiB after.\n")
        print("| | intake commit p50 ms | p99 ms | max ms | console refresh p50 ms | p95 ms |")
        print("|---|---|---|---|---|---|")
        for label, figures in (("no pruning", quiet), ("during a pass", busy)):
            print(f"| {label} | {figures['p50']:.1f} | {figures['p99']:.1f} | {figures['max']:.1f} | "
                  f"{figures['reads_p50']:.1f} | {figures['reads_p95']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
