"""An open-loop, fixed-rate webhook generator with a ledger (wrk2 is not packaged here).

Request ``i`` is due at ``start + i / rate`` whatever happened to the earlier ones (open loop:
a slow server cannot slow the arrivals down, so queueing shows up in the latency). Latency is
measured from the *due* time, so a late generator makes figures worse, never better. Every
delivery is unique and signed at send time (bench.gen). The ledger has one JSON line per
request: message id, conversation id, due time (epoch), HTTP status (0 = no answer), latency.

Prints ``OPENLOOP_JSON {...}`` with the summary of the requests due after ``--warmup``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import aiohttp

from bench.gen import WebhookFactory


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    factory = WebhookFactory(args.secret, conversations=args.conversations, first_message_id=args.first_message_id,
                             new_conversations=args.new_conversations,
                             first_conversation_id=args.first_conversation_id)
    connector = aiohttp.TCPConnector(limit=args.connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    ledger: list[tuple[int, int, float, int, float]] = []
    tasks: set[asyncio.Task[None]] = set()
    max_lag = 0.0

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async def send(due_wall: float, due_mono: float) -> None:
            d = factory.next()
            status = 0
            try:
                async with session.post(args.url, data=d.body, headers=d.headers) as resp:
                    await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            ledger.append((d.message_id, d.conversation_id, due_wall, status, time.monotonic() - due_mono))

        total = int(args.rate * args.duration)
        start_mono = time.monotonic() + 0.05
        start_wall = time.time() + 0.05
        interval = 1.0 / args.rate
        i = 0
        while i < total:
            now = time.monotonic()
            due = start_mono + i * interval
            if due > now:
                await asyncio.sleep(due - now)
                continue
            # Everything due by now goes out at once (catches up after a slow tick).
            while i < total and start_mono + i * interval <= now:
                due_i = start_mono + i * interval
                max_lag = max(max_lag, now - due_i)
                task = asyncio.create_task(send(start_wall + i * interval, due_i))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
        if tasks:
            await asyncio.wait(set(tasks), timeout=args.timeout + 5)
        elapsed = time.monotonic() - start_mono

    if args.ledger:
        with open(args.ledger, "w", encoding="utf-8") as fh:
            for mid, cid, due, status, lat in ledger:
                fh.write(json.dumps({"message_id": mid, "conversation_id": cid, "due": due, "status": status,
                                     "latency": lat}) + "\n")
    measured = [row for row in ledger if row[2] >= start_wall + args.warmup]
    lat_ms = [row[4] * 1000 for row in measured if 200 <= row[3] < 300]
    window = max(1e-9, args.duration - args.warmup)
    return {
        "rate_target": args.rate,
        "sent": len(ledger),
        "measured": len(measured),
        "ok": sum(1 for r in measured if 200 <= r[3] < 300),
        "non_2xx": sum(1 for r in measured if r[3] and not 200 <= r[3] < 300),
        "no_answer": sum(1 for r in measured if r[3] == 0),
        "rate_achieved": len(measured) / window,
        "p50_ms": percentile(lat_ms, 50),
        "p90_ms": percentile(lat_ms, 90),
        "p99_ms": percentile(lat_ms, 99),
        "max_ms": max(lat_ms) if lat_ms else float("nan"),
        "max_send_lag_ms": max_lag * 1000,
        "elapsed_s": elapsed,
        "start_wall": start_wall,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, required=True, help="seconds of sending")
    parser.add_argument("--warmup", type=float, default=0.0, help="seconds excluded from the summary")
    parser.add_argument("--conversations", type=int, default=40)
    parser.add_argument("--first-message-id", type=int, default=1_000_000)
    parser.add_argument("--new-conversations", action="store_true",
                        help="every message opens a conversation of its own")
    parser.add_argument("--first-conversation-id", type=int, default=10_000_000)
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--ledger", default="")
    args = parser.parse_args(argv)
    try:
        import uvloop

        summary = uvloop.run(run(args))
    except ImportError:
        summary = asyncio.run(run(args))
    print("OPENLOOP_JSON " + json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
