"""Profiles the sidecar under wrk: where does a webhook's CPU go?

Starts the same stack as bench/run.py (sidecar on CPU 0, fakes and wrk on CPU 1, fresh
database), warms up, then records the sidecar with py-spy while wrk loads one path, and prints
the busiest frames (inclusive and self) plus the sidecar's CPU share. Example:

    .venv/bin/python -m bench.profile --path /webhook/chatwoot --seconds 8
    .venv/bin/python -m bench.profile --path /bench/noop --no-spy      # CPU share and req/s only
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench import run as bench_run


def _top(raw: Path, n: int) -> list[str]:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        frames, samples = stack.split(";"), int(count)
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    out = [f"samples: {total}", "--- inclusive"]
    out += [f"{100 * c / total:5.1f}% {f[:140]}" for f, c in inclusive.most_common(n)]
    out += ["--- self"]
    out += [f"{100 * c / total:5.1f}% {f[:140]}" for f, c in own.most_common(n)]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", default="/webhook/chatwoot")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--bad", action="store_true", help="send bad signatures")
    parser.add_argument("--workers", action="store_true", help="run the queue worker too")
    parser.add_argument("--no-spy", action="store_true", help="only req/s and the sidecar's CPU share")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args(argv)
    spy_bin = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    with contextlib.suppress(OSError, AttributeError):  # pinning is best effort
        os.sched_setaffinity(0, {1})
    workdir = Path(tempfile.mkdtemp(prefix="sidecar-profile-"))
    ns = argparse.Namespace(duration=args.seconds, warmup=2.0, reps=1, conversations=40, concurrency=0)
    bench = bench_run.Bench(ns, workdir)
    raw = workdir / "profile.raw"
    with bench_run.Stack(bench, "profile", workers=args.workers) as stack:
        assert stack.sidecar is not None
        bench.wrk(stack, seconds=2, count=14_000, path=args.path, bad=args.bad)
        proc = psutil.Process(stack.sidecar.proc.pid)
        spy = None if args.no_spy else subprocess.Popen(
            [*bench_run.pin(1), spy_bin, "record", "-p", str(proc.pid), "-r", "200", "-d", str(int(args.seconds)),
             "--threads", "-f", "raw", "-o", str(raw), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cpu_before, wall_before = proc.cpu_times(), time.monotonic()
        result = bench.wrk(stack, seconds=args.seconds, count=int(args.seconds * 9000) + 2000, path=args.path,
                           bad=args.bad)
        cpu_after, wall_after = proc.cpu_times(), time.monotonic()
        if spy is not None:
            spy.wait()
    used = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    # bench.wrk also waits until the run's journal backlog is applied, so this CPU includes
    # each webhook's deferred apply: the whole cost of a request, not only its acknowledgement.
    print(f"{args.path}: {result.rps:.0f} req/s, p99 {result.p99_ms:.1f} ms; sidecar CPU "
          f"{1e6 * used / max(1, result.requests):.0f} µs per request incl. its apply "
          f"(share {used / (wall_after - wall_before):.3f}); left unapplied at the end {result.unapplied_after}")
    if spy is not None and raw.exists():
        print("\n".join(_top(raw, args.top)))
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
