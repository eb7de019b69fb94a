"""The sidecar benchmark (issue 7): every target is a ratio of two figures from this one run.

    .venv/bin/python bench/run.py                    # default: 10 s runs x 3, 30 s WAL soak
    .venv/bin/python bench/run.py --wal-seconds 300  # the full 5-minute soak (RESULTS.md)
    .venv/bin/python bench/run.py --smoke            # a few seconds end to end, no RESULTS.md

The sidecar runs as ``python -m sidecar`` pinned to CPU 0; the load generators (wrk, or
bench/openloop.py for fixed-rate runs), the instant fakes (bench/fakes.py) and the console-like
poller (bench/poller.py) are pinned to CPU 1. The load generator's own CPU time is read from the
kernel (``wait4`` rusage) and a run is marked INVALID when it used more than 0.9 of its core.

Over 400 lines on purpose: one benchmark run as a script, in the order it runs (start and pin
the processes, load, read the kernel's figures, judge each target, write RESULTS.md); no part
of it is used anywhere else.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import psutil  # noqa: E402
import yaml  # noqa: E402

from bench.fakes import CREW_KEY, TOKEN  # noqa: E402
from bench.gen import WebhookFactory  # noqa: E402

SECRET = "bench-webhook-secret-0123456789abcdef"
PY = sys.executable
LUA = REPO / "bench" / "wrk" / "rotate.lua"
CPU_LIMIT = 0.9
SMOKE_RATE = 50.0
"""The end-to-end runs' rate with --smoke (at most): it checks that every step works, not how fast,
so a loaded machine must not turn it into a long wait for a backlog."""
CONNECTIONS = 32


def pin(core: int) -> list[str]:
    """``taskset -c core`` when there are two cores to split, else nothing."""
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(core)]
    return []


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------- processes
class Service:
    """A long-running child whose output goes to a log file; ready when a marker line appears."""

    def __init__(self, name: str, cmd: list[str], log_path: Path, env: dict[str, str] | None = None,
                 cwd: Path = REPO, marker: str = "", pythonpath: Path = REPO) -> None:
        self.name = name
        self.cmd = cmd
        self.log_path = log_path
        self.lines: list[str] = []
        self._marker = marker
        self._found = threading.Event()
        self._matched = ""
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("SIDECAR_", "CHATWOOT_", "MCP_CREW_"))}
        full_env.update(env or {})
        full_env["PYTHONUNBUFFERED"] = "1"
        full_env["PYTHONPATH"] = str(pythonpath)
        self.proc = subprocess.Popen(cmd, cwd=str(cwd), env=full_env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def wait_ready(self, timeout: float = 30.0) -> str:
        if not self._found.wait(timeout):
            self.stop()
            raise RuntimeError(f"{self.name} did not print {self._marker!r}:\n" + "\n".join(self.lines[-30:]))
        return self._matched

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        with open(self.log_path, "a", encoding="utf-8") as log:
            for raw in self.proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                log.write(line + "\n")
                if self._marker and not self._found.is_set():
                    self.lines.append(line)
                    if self._marker in line:
                        self._matched = line
                        self._found.set()

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._thread.join(5)


@dataclass
class Measured:
    output: str
    cpu_seconds: float
    wall_seconds: float
    command: str

    @property
    def cpu_share(self) -> float:
        return self.cpu_seconds / self.wall_seconds if self.wall_seconds else 0.0


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> Measured:
    """Runs a load generator to completion; its CPU time comes from the kernel (wait4 rusage)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env["PYTHONPATH"] = str(REPO)
    with tempfile.TemporaryFile() as out:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=str(REPO), env=full_env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - started
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited {proc.returncode}:\n{text[-2000:]}")
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
    return Measured(text, usage.ru_utime + usage.ru_stime, wall, (prefix + " " if prefix else "") + shlex.join(cmd))


def tagged_json(text: str, tag: str) -> dict[str, Any]:
    for line in text.splitlines():
        if line.startswith(tag + " "):
            return json.loads(line[len(tag) + 1:])
    raise RuntimeError(f"no {tag} line in:\n{text[-2000:]}")


# ------------------------------------------------------------------------------------- the stack
class Stack:
    """Fakes (CPU 1) + one sidecar (CPU 0) with a fresh database."""

    def __init__(self, bench: Bench, name: str, *, workers: bool) -> None:
        self.bench = bench
        self.name = name
        self.workdir = bench.workdir / name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workers = workers
        self.fakes: Service | None = None
        self.sidecar: Service | None = None
        self.urls: dict[str, str] = {}
        self.port = free_port()
        self.db_path = self.workdir / "data" / "connector.db"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Stack:
        self.fakes = Service("fakes", [*pin(1), PY, "-m", "bench.fakes"], self.workdir / "fakes.log",
                             marker="FAKES_READY")
        line = self.fakes.wait_ready()
        self.urls = json.loads(line.split(" ", 1)[1])
        config = {
            "server": {"host": "127.0.0.1", "port": self.port, "public_url": self.url},
            "state": {"path": str(self.db_path)},
            "logging": {"dir": str(self.workdir / "logs")},
            "chatwoot": {"api_url": self.urls["chatwoot"], "api_access_token": TOKEN, "webhook_secret": SECRET},
            "mcp_crew": {"api_url": self.urls["crew"], "api_key": CREW_KEY},
            "processing": {"workers_enabled": self.workers, "debounce_seconds": 0.0, "debounce_max_seconds": 0.0,
                           **({"concurrency": self.bench.args.concurrency} if self.bench.args.concurrency else {})},
            "routing": {"default_crew": "suporte", "rules": [
                {"channel": "whatsapp", "crew": "whatsapp_crew"},
                {"channel": "facebook", "crew": "facebook_crew"},
                {"channel": "instagram", "crew": "instagram_crew"},
                {"channel": "webwidget", "crew": "webwidget_crew"},
            ]},
        }
        config_path = self.workdir / "config.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        cmd = [*pin(0), PY, "-m", "bench.noop", "--config", str(config_path)]
        self.bench.commands.setdefault("sidecar", shlex.join(cmd))
        self.sidecar = Service("sidecar", cmd, self.workdir / "sidecar.out",
                               cwd=self.workdir, marker="sidecar.ready")
        self.sidecar.wait_ready()
        return self

    def stop(self) -> None:
        for svc in (self.fakes, self.sidecar):  # fakes first: hung crew calls end at once
            if svc is not None:
                svc.stop()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- observations -----------------------------------------------------------------------
    def rss(self) -> int:
        assert self.sidecar is not None
        return psutil.Process(self.sidecar.proc.pid).memory_info().rss

    def _count(self, sql: str) -> int:
        """One count from the sidecar's database, read-only (the bench never writes to it)."""
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute(sql).fetchone()[0]
        finally:
            conn.close()

    def deliveries(self) -> int:
        return self._count("SELECT count(*) FROM deliveries")

    def settled_deliveries(self, quiet: float = 0.3, timeout: float = 15.0) -> int:
        """The stored count once it stopped moving (requests still in flight when wrk ended)."""
        last, deadline = self.deliveries(), time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(quiet)
            now = self.deliveries()
            if now == last:
                return now
            last = now
        return last

    def unapplied(self) -> int:
        """Deliveries acknowledged but not yet applied (the sidecar's journal backlog)."""
        return self._count("SELECT count(*) FROM deliveries WHERE outcome='pending'")

    def wait_applied(self, timeout: float = 600.0) -> float:
        """Seconds until the journal backlog is applied (a bench driver polling the database)."""
        started = time.monotonic()
        while self.unapplied() and time.monotonic() - started < timeout:
            time.sleep(0.1)
        return time.monotonic() - started

    def queue_depth(self) -> int:
        return self._count("SELECT count(*) FROM jobs WHERE state IN ('pending','in_flight','waiting')")

    def replies(self) -> tuple[list[tuple[float, list[int]]], int]:
        with urllib.request.urlopen(self.urls["chatwoot"] + "/_bench/replies", timeout=10) as resp:
            doc = json.loads(resp.read())
        return [(float(row[0]), list(row[1])) for row in doc["replies"]], int(doc["calls"])

    def hang_crew(self) -> None:
        req = urllib.request.Request(self.urls["control"] + "/_bench/crew?hang=1", method="POST", data=b"")
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()

    def poller(self, hz: float) -> Service:
        cmd = [*pin(1), PY, "-m", "bench.poller", "--db", str(self.db_path), "--hz", f"{hz:g}"]
        self.bench.commands.setdefault(f"poller {hz:g} Hz", shlex.join(cmd))
        svc = Service(f"poller-{hz:g}", cmd, self.workdir / f"poller-{hz:g}.log", marker="POLLER_READY")
        svc.wait_ready(60)  # on a busy machine its imports take a while; measuring starts after them
        return svc


def stop_poller(svc: Service) -> dict[str, Any]:
    svc.stop()
    text = svc.log_path.read_text(encoding="utf-8")
    return tagged_json(text, "POLLER_JSON")


# ------------------------------------------------------------------------------------- generators
@dataclass
class WrkResult:
    rps: float
    requests: int
    status_errors: int
    socket_errors: int
    wraps: int
    p50_ms: float
    p99_ms: float
    cpu_share: float
    command: str
    unique: bool = True
    unapplied_after: int = 0
    """Acknowledged deliveries the applier had not applied yet when wrk stopped."""
    apply_drain_s: float = 0.0
    """Seconds the sidecar then took to apply them (before the next run starts)."""

    @property
    def valid(self) -> bool:
        """The generator had CPU to spare and (where it matters) never resent a delivery."""
        return self.cpu_share <= CPU_LIMIT and (self.wraps == 0 or not self.unique)


@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    factory: WebhookFactory = field(init=False)
    commands: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.factory = WebhookFactory(SECRET, conversations=self.args.conversations)

    def wrk(self, stack: Stack, *, seconds: float, path: str = "/webhook/chatwoot", count: int = 0,
            bad: bool = False, label: str = "") -> WrkResult:
        """One wrk run over a file of fresh, unique signed requests written just before it."""
        req_file = stack.workdir / "requests.txt"
        self.factory.write_wrk_file(str(req_file), max(count, 100), bad_signature=bad)
        cmd = [*pin(1), "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
               "-s", str(LUA), stack.url]
        env = {"BENCH_FILE": str(req_file), "BENCH_PATH": path}
        # Deferred work of the previous run must not run inside this one's measurement.
        stack.wait_applied()
        m = run_measured(cmd, env)
        left = stack.unapplied()
        drain = stack.wait_applied()
        doc = tagged_json(m.output, "BENCH_JSON")
        if label:
            self.commands.setdefault(label, m.command.replace(str(req_file), "<fresh requests file>"))
        duration = doc["duration_us"] / 1e6
        return WrkResult(
            rps=doc["requests"] / duration if duration else 0.0, requests=doc["requests"],
            status_errors=doc["status_errors"],
            socket_errors=doc["connect_errors"] + doc["read_errors"] + doc["write_errors"] + doc["timeouts"],
            wraps=doc["wraps"], p50_ms=doc["lat_p50_us"] / 1000, p99_ms=doc["lat_p99_us"] / 1000,
            # No-op and rejected requests never reach dedup, so only accepted ones must be unique.
            cpu_share=m.cpu_share, command=m.command, unique=path != "/bench/noop" and not bad,
            unapplied_after=left, apply_drain_s=drain,
        )

    def openloop(self, stack: Stack, *, rate: float, seconds: float, warmup: float, ledger: Path | None,
                 label: str, conversations: int | None = None) -> tuple[dict[str, Any], float]:
        cmd = [*pin(1), PY, "-m", "bench.openloop", "--url", stack.url + "/webhook/chatwoot", "--secret", SECRET,
               "--rate", f"{rate:.0f}", "--duration", f"{seconds:g}", "--warmup", f"{warmup:g}",
               "--conversations", str(conversations or self.args.conversations),
               "--first-message-id", str(next(self.factory._ids) + 10_000_000)]  # noqa: SLF001
        if ledger is not None:
            cmd += ["--ledger", str(ledger)]
        m = run_measured(cmd)
        self.commands.setdefault(label, m.command.replace(SECRET, "<secret>"))
        return tagged_json(m.output, "OPENLOOP_JSON"), m.cpu_share


# ------------------------------------------------------------------------------------- scenarios
def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def throughput_phase(bench: Bench, results: dict[str, Any]) -> None:
    """Intake alone (workers off): no-op vs signed vs bad signature vs with the console polling."""
    a = bench.args
    runs: dict[str, list[WrkResult]] = {k: [] for k in ("noop", "good", "bad", "good_poll1", "good_poll10")}
    bad_rows: list[int] = []
    poll_stats: dict[str, Any] = {}
    with Stack(bench, "intake", workers=False) as stack:
        warm = bench.wrk(stack, seconds=a.warmup, count=int(a.warmup * 6000))
        est = max(500.0, warm.rps)
        need = int(est * a.duration * 2) + 2000
        for _ in range(a.reps):
            runs["noop"].append(bench.wrk(stack, seconds=a.duration, path="/bench/noop", count=2000,
                                          label="wrk no-op"))
            runs["good"].append(bench.wrk(stack, seconds=a.duration, count=need, label="wrk signed intake"))
            before = stack.settled_deliveries()
            runs["bad"].append(bench.wrk(stack, seconds=a.duration, count=need, bad=True, label="wrk bad signature"))
            bad_rows.append(stack.settled_deliveries() - before)
            for hz, key in ((1.0, "good_poll1"), (10.0, "good_poll10")):
                poller = stack.poller(hz)
                runs[key].append(bench.wrk(stack, seconds=a.duration, count=need, label=f"wrk intake + poller {hz:g} Hz"))
                poll_stats[key] = stop_poller(poller)
    results["throughput"] = {k: [r.__dict__ for r in v] for k, v in runs.items()}
    results["bad_rows_written"] = sum(bad_rows)
    results["poller"] = poll_stats
    for key, values in runs.items():
        results[f"{key}_rps"] = median([r.rps for r in values])
        results[f"{key}_valid"] = all(r.valid for r in values)
        results[f"{key}_cpu"] = max(r.cpu_share for r in values)
    results["good_p99_ms_saturated"] = median([r.p99_ms for r in runs["good"]])
    results["good_unapplied_after"] = median([r.unapplied_after for r in runs["good"]])
    results["good_apply_drain_s"] = median([r.apply_drain_s for r in runs["good"]])
    results["good_status_errors"] = sum(r.status_errors for r in runs["good"])
    results["bad_non401_ok"] = all(r.status_errors == r.requests for r in runs["bad"])


def drain_phase(bench: Bench, results: dict[str, Any]) -> None:
    """Intake at saturation while the worker drains the growing queue to the instant fakes."""
    a = bench.args
    need = int(max(500.0, results["good_rps"]) * a.duration * 2) + 2000
    runs: list[WrkResult] = []
    with Stack(bench, "drain", workers=True) as stack:
        bench.wrk(stack, seconds=a.warmup, count=int(a.warmup * 6000))
        for _ in range(a.reps):
            runs.append(bench.wrk(stack, seconds=a.duration, count=need, label="wrk intake while draining"))
        _, calls = stack.replies()
        results["drain_chatwoot_calls"] = calls
    results["drain"] = [r.__dict__ for r in runs]
    results["drain_rps"] = median([r.rps for r in runs])
    results["drain_valid"] = all(r.valid for r in runs)
    results["drain_cpu"] = max(r.cpu_share for r in runs)


def e2e_phase(bench: Bench, results: dict[str, Any]) -> None:
    """Fixed rate at half the saturation rate: intake p99, answered/s and webhook-to-reply latency,
    first with every message in its own conversation (nothing folds: one crew call and one reply
    per message), then with the run's few busy conversations (bursts fold, overtaken answers are
    superseded); then the same rate with every crew request hanging."""
    a = bench.args
    rate = max(20.0, 0.5 * results["good_rps"])
    if a.smoke:
        rate = min(rate, SMOKE_RATE)
    results["half_rate"] = rate
    distinct = _e2e_run(bench, rate, a.e2e_conversations, "e2e", "openloop half rate (healthy crew)")
    results["half"] = distinct["summary"]
    results["half_cpu"] = distinct["cpu"]
    results["half_p99_ms"] = distinct["summary"]["p99_ms"]
    results.update({f"e2e_{k}": v for k, v in distinct.items() if k not in ("summary", "cpu")})
    results["e2e_conversations"] = a.e2e_conversations
    shared = _e2e_run(bench, rate, a.conversations, "e2e-shared",
                      f"openloop half rate ({a.conversations} conversations)")
    results.update({f"e2e_shared_{k}": v for k, v in shared.items() if k != "summary"})
    with Stack(bench, "hang", workers=True) as stack:
        stack.hang_crew()
        summary, cpu = bench.openloop(stack, rate=rate, seconds=a.duration + a.warmup, warmup=a.warmup,
                                      ledger=None, label="openloop half rate (crew hangs)")
        results["hang"] = summary
        results["hang_cpu"] = cpu
        results["hang_p99_ms"] = summary["p99_ms"]
        results["hang_backlog"] = stack.queue_depth()


def _e2e_run(bench: Bench, rate: float, conversations: int, name: str, label: str) -> dict[str, Any]:
    a = bench.args
    with Stack(bench, name, workers=True) as stack:
        ledger = stack.workdir / "ledger.jsonl"
        summary, cpu = bench.openloop(stack, rate=rate, seconds=a.duration + a.warmup, warmup=a.warmup,
                                      ledger=ledger, label=label, conversations=conversations)
        rows = [json.loads(line) for line in ledger.read_text().splitlines()]
        accepted = {r["message_id"]: r["due"] for r in rows if 200 <= r["status"] < 300}
        answered: dict[int, float] = {}
        # Until every accepted message is answered, or the sidecar has no open work left (then
        # what is unanswered was folded into a later burst or lost, not late: a backlog is worked
        # off first). The deadline only bounds a sidecar that stopped working.
        deadline = time.monotonic() + max(120.0, a.duration)
        while True:
            idle = stack.unapplied() == 0 and stack.queue_depth() == 0  # before reading the replies
            replies, _ = stack.replies()
            for at, ids in replies:
                for mid in ids:
                    if mid in accepted and mid not in answered:
                        answered[mid] = at
            if len(answered) >= len(accepted) or idle or time.monotonic() > deadline:
                break
            time.sleep(0.5)  # a bench driver polling the fake's ledger, not a test waiting on state
        start = summary["start_wall"] + a.warmup
        end = summary["start_wall"] + a.duration + a.warmup
        window = end - start
        lat = sorted((answered[m] - accepted[m]) * 1000 for m in answered if accepted[m] >= start)
        return {
            "summary": summary, "cpu": cpu,
            "intake_rps": sum(1 for due in accepted.values() if start <= due < end) / window,
            "answered_rps": sum(1 for at in answered.values() if start <= at < end) / window,
            "unanswered": len(accepted) - len(answered),
            "p50_ms": lat[len(lat) // 2] if lat else float("nan"),
            "p99_ms": lat[min(len(lat) - 1, int(0.99 * (len(lat) - 1)))] if lat else float("nan"),
            "last_answer_after_s": (max(answered.values()) - end) if answered else float("nan"),
            "backlog_after": stack.queue_depth(),
        }


def memory_phase(bench: Bench, results: dict[str, Any]) -> None:
    """RSS after the first ``--mem-first`` and after ``--mem-total`` stored webhooks (workers on).

    wrk stops on time only, so the webhooks go in chunks sized to end just short of
    ``--mem-first`` new deliveries each; the figures carry the exact stored counts.
    """
    a = bench.args
    rate = max(200.0, results.get("good_rps", 0.0))
    rss: list[tuple[int, int]] = []
    cpu = 0.0
    with Stack(bench, "memory", workers=True) as stack:
        stored = 0
        while stored < a.mem_total:
            want = min(a.mem_first, a.mem_total - stored)
            seconds = max(1, int(0.8 * want / rate))
            r = bench.wrk(stack, seconds=seconds, count=int(want * 1.5) + 2 * CONNECTIONS, label="wrk memory chunk")
            cpu = max(cpu, r.cpu_share)
            stored = stack.deliveries()
            rss.append((stored, stack.rss()))
            if r.rps:
                rate = r.rps
    first = next(x for x in rss if x[0] >= a.mem_first)
    results["memory"] = rss
    results["rss_first"] = first[1]
    results["rss_last"] = rss[-1][1]
    results["mem_first_n"] = first[0]
    results["mem_last_n"] = rss[-1][0]
    results["memory_cpu"] = cpu


def wal_phase(bench: Bench, results: dict[str, Any]) -> None:
    a = bench.args
    with Stack(bench, "wal", workers=True) as stack:
        poller = stack.poller(1.0)
        wal = Path(str(stack.db_path) + "-wal")
        peak = [0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                with contextlib.suppress(FileNotFoundError):
                    peak[0] = max(peak[0], wal.stat().st_size)
                stop.wait(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        summary, cpu = bench.openloop(stack, rate=results["half_rate"], seconds=a.wal_seconds, warmup=0,
                                      ledger=None, label="openloop WAL soak (+ poller 1 Hz)")
        stop.set()
        sampler.join()
        results["wal_poller"] = stop_poller(poller)
        results["wal_peak_bytes"] = peak[0]
        results["wal_seconds"] = a.wal_seconds
        results["wal_soak"] = summary
        results["wal_cpu"] = cpu


# ------------------------------------------------------------------------------------- report
def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    wrk_version = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=5)
        wrk_version = (out.stdout or out.stderr).splitlines()[0].strip()
    return {
        "cores": os.cpu_count(), "cpu": model, "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version, "kernel": platform.release(), "wrk": wrk_version,
        "pinning": "server CPU 0, generators/fakes/poller CPU 1" if pin(0) else "none (taskset or 2 cores missing)",
    }


def targets(r: dict[str, Any]) -> list[tuple[str, str, str, bool, bool]]:
    """(target, measured, ratio text, met, valid)."""
    def ok(x: float) -> bool:
        return x == x  # not NaN

    rows = []
    p1 = r["good_rps"] / r["noop_rps"]
    rows.append(("signed intake ≥ 0.5 × no-op", f"{r['good_rps']:.0f} / {r['noop_rps']:.0f} req/s",
                 f"{p1:.2f}", p1 >= 0.5, r["good_valid"] and r["noop_valid"]))
    p2 = r["bad_rps"] / r["good_rps"]
    rows.append(("bad signature ≥ 1.0 × good, 0 rows", f"{r['bad_rps']:.0f} / {r['good_rps']:.0f} req/s, "
                 f"{r['bad_rows_written']} rows", f"{p2:.2f}", p2 >= 1.0 and r["bad_rows_written"] == 0,
                 r["bad_valid"] and r["good_valid"]))
    rows.append(("intake p99 at half saturation ≤ 50 ms", f"{r['half_p99_ms']:.1f} ms at {r['half_rate']:.0f} req/s",
                 f"{r['half_p99_ms'] / 5000:.4f} of 5 s", ok(r["half_p99_ms"]) and r["half_p99_ms"] <= 50,
                 r["half_cpu"] <= CPU_LIMIT))
    p4 = r["drain_rps"] / r["good_rps"]
    rows.append(("intake while draining ≥ 0.7 × alone", f"{r['drain_rps']:.0f} / {r['good_rps']:.0f} req/s",
                 f"{p4:.2f}", p4 >= 0.7, r["drain_valid"] and r["good_valid"]))
    p5 = r["e2e_answered_rps"] / r["e2e_intake_rps"] if r["e2e_intake_rps"] else float("nan")
    rows.append((f"answered/s ≥ intake/s at half load ({r['e2e_conversations']} conversations)",
                 f"{r['e2e_answered_rps']:.0f} / {r['e2e_intake_rps']:.0f} msg/s; "
                 f"webhook→reply p50 {r['e2e_p50_ms']:.0f} ms, p99 {r['e2e_p99_ms']:.0f} ms; "
                 f"{r['e2e_unanswered']} unanswered", f"{p5:.3f}",
                 ok(p5) and p5 >= 0.99 and r["e2e_unanswered"] == 0, r["half_cpu"] <= CPU_LIMIT))
    for key, hz in (("good_poll1", 1), ("good_poll10", 10)):
        p6 = r[f"{key}_rps"] / r["good_rps"]
        rows.append((f"intake with console {hz} Hz ≥ 0.9 × without", f"{r[f'{key}_rps']:.0f} / {r['good_rps']:.0f} req/s",
                     f"{p6:.2f}", p6 >= 0.9, r[f"{key}_valid"] and r["good_valid"]))
    p7 = r["hang_p99_ms"] / r["half_p99_ms"]
    rows.append(("intake p99, crew hangs ≤ 1.5 × healthy", f"{r['hang_p99_ms']:.1f} / {r['half_p99_ms']:.1f} ms",
                 f"{p7:.2f}", ok(p7) and p7 <= 1.5, r["hang_cpu"] <= CPU_LIMIT and r["half_cpu"] <= CPU_LIMIT))
    p9 = r["rss_last"] / r["rss_first"]
    rows.append((f"RSS after {r['mem_last_n']:,} ≤ 1.2 × after {r['mem_first_n']:,}",
                 f"{r['rss_last'] / 2**20:.1f} / {r['rss_first'] / 2**20:.1f} MiB", f"{p9:.2f}", p9 <= 1.2,
                 r["memory_cpu"] <= CPU_LIMIT))
    rows.append((f"WAL < 16 MB over {r['wal_seconds']:g} s with console", f"peak {r['wal_peak_bytes'] / 2**20:.2f} MiB",
                 f"{r['wal_peak_bytes'] / 2**20 / 16:.2f} of 16 MiB", r["wal_peak_bytes"] < 16 * 2**20,
                 r["wal_cpu"] <= CPU_LIMIT))
    return rows


def render(r: dict[str, Any], bench: Bench, argv: list[str]) -> str:
    m = r["machine"]
    lines = [
        "# Benchmark results (issue 7)",
        "",
        f"- Date: {r['date']}",
        f"- Machine: {m['cores']} cores ({m['cpu']}), kernel {m['kernel']}, Python {m['python']}, "
        f"SQLite {m['sqlite']}, {m['wrk']}",
        f"- Pinning: {m['pinning']}",
        f"- Load average before / after: {r['load_before']} / {r['load_after']} (other engineers share this box)",
        f"- Command: `{shlex.join(argv)}` ({r['elapsed_s']:.0f} s)",
        f"- Method: each throughput figure is the median of {bench.args.reps} runs of {bench.args.duration:g} s "
        f"(after a {bench.args.warmup:g} s warm-up), wrk -t1 -c{CONNECTIONS}; fixed-rate figures come from "
        f"bench/openloop.py (latency measured from each request's due time). Every delivery is unique "
        f"(new delivery id and message id, {bench.args.conversations} conversations over 4 channels) and "
        f"validly signed; request files are written just before each run. A run is INVALID when its load "
        f"generator used more than {CPU_LIMIT} of its core, or when wrk ran out of unique requests.",
        "",
        "## Targets",
        "",
        "| Target | Measured | Ratio | Met? | Run valid? |",
        "|---|---|---|---|---|",
    ]
    for name, measured, ratio, met, valid in targets(r):
        lines.append(f"| {name} | {measured} | {ratio} | {'yes' if met else '**no**'} | "
                     f"{'yes' if valid else '**INVALID**'} |")
    lines += ["", "## Every figure", "", "| Figure | Value |", "|---|---|"]
    fig = [
        ("no-op req/s (median)", f"{r['noop_rps']:.0f}"),
        ("signed intake req/s (median)", f"{r['good_rps']:.0f}"),
        ("signed intake p99 at saturation (wrk, closed loop)", f"{r['good_p99_ms_saturated']:.1f} ms"),
        ("signed intake non-2xx", str(r["good_status_errors"])),
        ("signed intake: acknowledged but not yet applied when wrk stopped; seconds to apply them (median)",
         f"{r['good_unapplied_after']:.0f}; {r['good_apply_drain_s']:.1f} s"),
        ("bad signature req/s (median); all answered 401", f"{r['bad_rps']:.0f}; {r['bad_non401_ok']}"),
        ("rows written by bad-signature runs", str(r["bad_rows_written"])),
        ("intake + console 1 Hz / 10 Hz req/s", f"{r['good_poll1_rps']:.0f} / {r['good_poll10_rps']:.0f}"),
        ("console refresh used; p50 refresh time 1 Hz / 10 Hz",
         f"{r['poller']['good_poll1']['refresh']}; {r['poller']['good_poll1']['p50_ms']:.1f} / "
         f"{r['poller']['good_poll10']['p50_ms']:.1f} ms"),
        ("intake while draining req/s (median)", f"{r['drain_rps']:.0f}"),
        ("Chatwoot API calls served during the drain runs", str(r["drain_chatwoot_calls"])),
        ("half rate (0.5 × signed intake)", f"{r['half_rate']:.0f} req/s"),
        ("intake at half rate p50 / p90 / p99 / max",
         f"{r['half']['p50_ms']:.1f} / {r['half']['p90_ms']:.1f} / {r['half']['p99_ms']:.1f} / {r['half']['max_ms']:.1f} ms"),
        ("intake at half rate, crew hanging p50 / p99 / max",
         f"{r['hang']['p50_ms']:.1f} / {r['hang']['p99_ms']:.1f} / {r['hang']['max_ms']:.1f} ms"),
        ("queue depth after the hanging-crew run", str(r["hang_backlog"])),
        (f"end to end, {r['e2e_conversations']} conversations: intake / answered msg/s in the window",
         f"{r['e2e_intake_rps']:.1f} / {r['e2e_answered_rps']:.1f}"),
        ("  webhook→reply latency p50 / p99 (debounce 0); last answer after the load stopped",
         f"{r['e2e_p50_ms']:.0f} / {r['e2e_p99_ms']:.0f} ms; {r['e2e_last_answer_after_s']:.1f} s"),
        ("  unanswered messages after the drain grace; queue depth", f"{r['e2e_unanswered']}; {r['e2e_backlog_after']}"),
        (f"end to end, {bench.args.conversations} conversations (bursts fold, overtaken answers superseded): "
         "intake / answered msg/s in the window",
         f"{r['e2e_shared_intake_rps']:.1f} / {r['e2e_shared_answered_rps']:.1f}"),
        ("  webhook→reply latency p50 / p99; last answer after the load stopped; unanswered",
         f"{r['e2e_shared_p50_ms']:.0f} / {r['e2e_shared_p99_ms']:.0f} ms; "
         f"{r['e2e_shared_last_answer_after_s']:.1f} s; {r['e2e_shared_unanswered']}"),
        ("RSS by deliveries stored", ", ".join(f"{n:,}: {b / 2**20:.1f} MiB" for n, b in r["memory"])),
        ("WAL peak; soak p99; poller refreshes / errors",
         f"{r['wal_peak_bytes']:,} B; {r['wal_soak']['p99_ms']:.1f} ms; {r['wal_poller']['refreshes']} / "
         f"{r['wal_poller']['errors']}"),
        ("load generator CPU share, worst run (limit 0.9)",
         f"wrk {max(r['noop_cpu'], r['good_cpu'], r['bad_cpu'], r['drain_cpu'], r['good_poll1_cpu'], r['good_poll10_cpu']):.2f}, "
         f"openloop {max(r['half_cpu'], r['e2e_shared_cpu'], r['hang_cpu'], r['wal_cpu']):.2f}, memory wrk {r['memory_cpu']:.2f}"),
    ]
    lines += [f"| {a} | {b} |" for a, b in fig]
    lines += ["", "## Exact commands", "", "```"]
    lines += [f"# {k}\n{v}" for k, v in bench.commands.items()]
    lines += ["```", ""]
    if bench.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in bench.notes] + [""]
    analysis = REPO / "bench" / "ANALYSIS.md"
    if analysis.exists():  # the profiles and before/after figures, kept by hand next to the driver
        lines += [analysis.read_text(encoding="utf-8").rstrip(), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--conversations", type=int, default=40)
    parser.add_argument("--e2e-conversations", type=int, default=6000,
                        help="conversations in the end-to-end run (6000: about one message each)")
    parser.add_argument("--mem-first", type=int, default=10_000, help="webhooks before the first RSS reading")
    parser.add_argument("--mem-total", type=int, default=100_000, help="webhooks before the last RSS reading")
    parser.add_argument("--wal-seconds", type=float, default=30.0, help="WAL soak length (300 for the full run)")
    parser.add_argument("--concurrency", type=int, default=0,
                        help="processing.concurrency for the sidecar (0: the sidecar's default)")
    parser.add_argument("--assume-rps", type=float, default=0.0,
                        help="signed intake rate to assume when --only skips the throughput phase")
    parser.add_argument("--out", default=str(REPO / "bench" / "RESULTS.md"))
    parser.add_argument("--json", default="", help="also write every figure as JSON here")
    parser.add_argument("--workdir", default="")
    parser.add_argument("--smoke", action="store_true", help="tiny everything; writes to a temp dir")
    parser.add_argument("--only", default="", help="comma list: throughput,drain,e2e,memory,wal (debugging)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.duration, args.warmup, args.reps = 1.0, 1.0, 1
        args.mem_first, args.mem_total, args.wal_seconds = 300, 900, 2.0
    if not shutil.which("wrk"):
        print("wrk is not installed (make bench installs it: apt-get install -y wrk)", file=sys.stderr)
        return 2
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setaffinity(0, {1} if pin(1) else set(range(os.cpu_count() or 1)))
    tmp = tempfile.TemporaryDirectory(prefix="sidecar-bench-")
    workdir = Path(args.workdir or tmp.name)
    if args.smoke and args.out == str(REPO / "bench" / "RESULTS.md"):
        args.out = str(workdir / "RESULTS.md")
    bench = Bench(args, workdir)
    started = time.monotonic()
    results: dict[str, Any] = {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                               "machine": machine(), "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    phases = [("throughput", throughput_phase), ("drain", drain_phase), ("e2e", e2e_phase),
              ("memory", memory_phase), ("wal", wal_phase)]
    only = set(filter(None, args.only.split(",")))
    if args.assume_rps:
        results["good_rps"] = args.assume_rps
    try:
        for name, phase in phases:
            if only and name not in only:
                continue
            t0 = time.monotonic()
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            phase(bench, results)
            print(f"[bench] {name} done in {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    finally:
        results["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        results["elapsed_s"] = time.monotonic() - started
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    if only:
        print(json.dumps({k: v for k, v in results.items() if not isinstance(v, list | dict)}, indent=1, default=str))
        return 0
    report = render(results, bench, [Path(sys.executable).name, "bench/run.py", *(argv or sys.argv[1:])])
    Path(args.out).write_text(report, encoding="utf-8")
    print(report)
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
