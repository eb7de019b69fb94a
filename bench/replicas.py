"""Answered messages per second with 1, 2 and 4 sidecar processes, on SQLite and on PostgreSQL,
side by side in one run (issue 14).

    .venv/bin/python -m bench.replicas                      # 1, 2, 4 processes; both back-ends
    .venv/bin/python -m bench.replicas --processes 1,2 --rate 400 --seconds 8

Each system is ``python -m sidecar`` with ``server.processes: N`` (one process does everything at
N=1; else one queue-worker process and N-1 HTTP intake processes on one port, all on one state):
the state is a SQLite file, or a fresh database on a throw-away PostgreSQL cluster
(``scripts/pg-cluster``, or ``--pg-url`` / ``$CONNECTOR_TEST_PG_URL``). The instant fakes
(bench.fakes) and the open-loop generator (bench.openloop, every message a new conversation)
share CPU 1; the sidecar's processes are not pinned (they are what is measured).

Fed above what any of them sustains (``--rate`` for ``--seconds``); answered/s is the answered
messages divided by the time from the first delivery to the last reply. Also: the share answered,
intake p99, and the server's CPU seconds per answered message.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402
import yaml  # noqa: E402

from bench.capacity import ROUTES, Fakes, System, feed  # noqa: E402
from bench.fakes import CREW_KEY, TOKEN  # noqa: E402
from bench.run import PY, SECRET, Service, free_port  # noqa: E402


def start(name: str, workdir: Path, fakes: Fakes, *, processes: int, database_url: str) -> System:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": port, "public_url": f"http://127.0.0.1:{port}",
                   "processes": processes},
        "state": {"path": str(workdir / "data" / "connector.db"), "database_url": database_url},
        "logging": {"dir": str(workdir / "logs")},
        "chatwoot": {"api_url": fakes.urls["chatwoot"], "api_access_token": TOKEN, "webhook_secret": SECRET},
        "mcp_crew": {"api_url": fakes.urls["crew"], "api_key": CREW_KEY},
        "processing": {"debounce_seconds": 0.0, "debounce_max_seconds": 0.0},
        "routing": {"default_crew": "suporte", "rules": ROUTES},
    }
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    svc = Service(name, [PY, "-m", "sidecar", "--config", str(path)], workdir / "sidecar.out", cwd=workdir,
                  marker="sidecar.ready")
    svc.wait_ready(60)
    return System(name, svc, f"http://127.0.0.1:{port}")


def fresh_database(server: str, name: str) -> str:
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    head, _ = server.rsplit("/", 1)
    return f"{head}/{name}"


def measure(system: System, fakes: Fakes, workdir: Path, rate: float, seconds: float) -> dict[str, Any]:
    run = feed(system, fakes, workdir, rate=rate, seconds=seconds, settle=30.0)
    start_wall = run.feed_end - seconds
    last = max((min(times) for m, times in run.replies.items() if m in run.sent), default=start_wall)
    answered = run.answered
    return {"fed": len(run.sent) + run.non_2xx, "accepted": len(run.sent), "answered": answered,
            "answered_per_s": round(answered / max(1e-9, last - start_wall), 1),
            "intake_p99_ms": round(run.intake_p99_ms, 1),
            "cpu_ms_per_answered": round(1000 * run.server_cpu / answered, 2) if answered else None,
            "doubled": run.doubled}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--rate", type=float, default=600.0, help="new conversations per second fed")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--pg-url", default=os.environ.get("CONNECTOR_TEST_PG_URL", ""),
                        help="a PostgreSQL server (a role that may create databases); default: start one")
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args(argv)
    counts = [int(x) for x in args.processes.split(",")]
    names = args.backends.split(",")
    workdir = Path(tempfile.mkdtemp(prefix="bench-replicas-"))
    cluster = None
    server = args.pg_url
    if "postgres" in names and not server:
        cluster = tempfile.mkdtemp(prefix="connector-pg-")
        server = subprocess.run([str(REPO / "scripts" / "pg-cluster"), "start", cluster], check=True,
                                capture_output=True, text=True).stdout.strip().splitlines()[-1]
    results: dict[str, dict[int, dict[str, Any]]] = {}
    fakes = Fakes(workdir / "fakes")
    try:
        for processes in counts:
            for backend in names:
                tag = f"{backend}-{processes}"
                url = fresh_database(server, f"bench_{processes}") if backend == "postgres" else ""
                system = start(tag, workdir / tag, fakes, processes=processes, database_url=url)
                try:
                    results.setdefault(backend, {})[processes] = figures = measure(
                        system, fakes, workdir / tag, args.rate, args.seconds)
                finally:
                    system.stop()
                print(f"{tag}: {json.dumps(figures)}", flush=True)
                time.sleep(1.0)  # let the stopped processes' sockets and the fakes' queues drain
    finally:
        fakes.stop()
        if cluster:
            subprocess.run([str(REPO / "scripts" / "pg-cluster"), "stop", cluster], check=False)
    print()
    print(f"answered/s, fed {args.rate:g} new conversations/s for {args.seconds:g} s "
          f"({os.cpu_count()} CPUs; fakes and generator on CPU 1)")
    print(f"{'processes':>10} " + " ".join(f"{b:>28}" for b in names))
    for processes in counts:
        cells = []
        for backend in names:
            r = results.get(backend, {}).get(processes)
            cells.append(f"{r['answered_per_s']:>8} ({r['answered']}/{r['accepted']}, p99 {r['intake_p99_ms']} ms)"
                         if r else "-")
        print(f"{processes:>10} " + " ".join(f"{c:>28}" for c in cells))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
