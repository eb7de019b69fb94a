"""A console-like reader for the benchmark: the console's full refresh, ``--hz`` times a second.

One refresh runs what the console's screens read (``console.reader.Reader``, the console's own
read-only access layer): overview (health, queue, metrics, per-minute charts), the first page of
conversations, the newest conversation's detail, the routing decisions of the last hour and the
dead letters. If ``bench/console_refresh.py`` (owned by the console engineer) provides
``full_refresh(reader)``, that is used instead, so the bench follows the console as it changes.

Prints ``POLLER_READY`` once a stop signal can be handled, and ``POLLER_JSON {...}`` on
SIGTERM/SIGINT or after ``--duration`` seconds.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from console.reader import Reader, ReadError
from console.snapshots import ConversationQuery


def default_refresh(reader: Reader) -> None:
    reader.overview()
    page = reader.conversations(ConversationQuery())
    if page.rows:
        first = page.rows[0]
        reader.conversation(first.account_id, first.conversation_id)
    reader.decisions(3600.0)
    reader.dead_letters()


def pick_refresh() -> tuple[str, Callable[[Reader], Any]]:
    try:
        from bench import console_refresh  # type: ignore[attr-defined]
    except ImportError:
        return "bench.poller.default_refresh", default_refresh
    fn = getattr(console_refresh, "full_refresh", None)
    if callable(fn):
        return "bench.console_refresh.full_refresh", fn
    return "bench.poller.default_refresh", default_refresh


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", required=True)
    parser.add_argument("--hz", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=0.0, help="0: until SIGTERM")
    args = parser.parse_args(argv)
    name, refresh = pick_refresh()
    reader = Reader(args.db)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    # From here on a stop signal ends the loop and the figures are printed: the driver waits for
    # this line before it starts measuring (a SIGTERM during the imports would kill us silently).
    print("POLLER_READY", flush=True)
    interval = 1.0 / args.hz
    durations: list[float] = []
    errors = 0
    started = time.monotonic()
    next_at = started
    while not stop.is_set():
        if args.duration and time.monotonic() - started >= args.duration:
            break
        t0 = time.monotonic()
        try:
            refresh(reader)
        except ReadError:
            errors += 1
        durations.append(time.monotonic() - t0)
        next_at += interval
        stop.wait(max(0.0, next_at - time.monotonic()))
    reader.close()
    durations.sort()
    print("POLLER_JSON " + json.dumps({
        "refresh": name, "hz": args.hz, "refreshes": len(durations), "errors": errors,
        "p50_ms": durations[len(durations) // 2] * 1000 if durations else None,
        "max_ms": durations[-1] * 1000 if durations else None,
    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
