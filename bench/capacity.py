"""How much the sidecar can carry (issue 13), side by side with what it replaces, in one run.

    .venv/bin/python -m bench.capacity                        # every scenario, this tree only
    .venv/bin/python -m bench.capacity --before /path/to/old  # also an older checkout, same run
    .venv/bin/python -m bench.capacity --only cpu,sustained --no-ancestor

Systems (each server pinned to CPU 0; fakes and load generator pinned to CPU 1):
- ``ancestor``: the seed's synchronous Flask connector (bench/ancestor.py) under ``gunicorn -w 4``.
- ``after``: this tree's sidecar; ``before``: the sidecar from ``--before`` (another checkout),
  started the same way with the same fakes, so old and new are measured minutes apart.

Scenarios (every message opens a new conversation, so each costs one crew call and one reply):
- ``cpu``: a fixed rate everyone sustains; server CPU seconds (process tree, user+system) per
  answered message, from the first delivery until the last reply.
- ``sustained``: the highest fixed rate whose messages are all answered, 99 % of them within
  1 s of being sent (searched by bisection), i.e. answered messages per second on one core.
- ``slowcrew``: the shipped config.yaml (only URLs, secrets and paths set) with a crew that takes
  2 s or 10 s, fed 40 and 200 new conversations per second for 10 s: answered/fed within
  ``latency + debounce + 15 s`` after the feed, reply latency minus the crew's latency
  (p50/p99), the crew's peak of requests in flight, work it did twice, replies per message.

The server's CPU comes from /proc (psutil) over its whole process tree; the load generator's
own CPU share is reported, and a run whose generator used more than 0.9 of its core is INVALID.

Over 400 lines on purpose: one capacity run as a script (systems, scenarios, measuring,
the report), in the order it runs; no part of it is used anywhere else.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import psutil  # noqa: E402
import yaml  # noqa: E402

from bench.fakes import CREW_KEY, TOKEN  # noqa: E402
from bench.run import CPU_LIMIT, PY, SECRET, Service, free_port, pin, run_measured, tagged_json  # noqa: E402

GUNICORN = str(Path(PY).with_name("gunicorn"))
ROUTES = [{"channel": "whatsapp", "crew": "whatsapp_crew"}, {"channel": "facebook", "crew": "facebook_crew"},
          {"channel": "instagram", "crew": "instagram_crew"}, {"channel": "webwidget", "crew": "webwidget_crew"}]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def tree_cpu(pid: int) -> float:
    """User+system seconds of a process and its live children."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            t = proc.cpu_times()
            total += t.user + t.system
    return total


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def _post(url: str) -> dict[str, Any]:
    req = urllib.request.Request(url, method="POST", data=b"")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


class Fakes:
    def __init__(self, workdir: Path, crew_latency: float = 0.0) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.svc = Service("fakes", [*pin(1), PY, "-m", "bench.fakes", "--crew-latency", f"{crew_latency:g}"],
                           workdir / "fakes.log", marker="FAKES_READY")
        self.urls: dict[str, str] = json.loads(self.svc.wait_ready().split(" ", 1)[1])

    def replies(self) -> list[tuple[float, int]]:
        """(time, conversation id) of every public reply since the last call. Every message of
        these runs opens its own conversation, so a reply names its message by its conversation
        (also a reply that does not echo the message id, e.g. a local crew's canned answer)."""
        doc = _get(self.urls["chatwoot"] + "/_bench/replies")
        return [(float(row[0]), int(row[2])) for row in doc["replies"]]

    def crew_figures(self) -> dict[str, Any]:
        return _get(self.urls["control"] + "/_bench/crew")

    def reset_crew(self) -> None:
        _post(self.urls["control"] + "/_bench/crew?reset=1")

    def stop(self) -> None:
        self.svc.stop()


@dataclass
class System:
    """One server under test: its name, the process, and its webhook URL."""

    name: str
    svc: Service
    url: str

    def cpu(self) -> float:
        return tree_cpu(self.svc.proc.pid)

    def stop(self) -> None:
        self.svc.stop()


def start_sidecar(name: str, tree: Path, workdir: Path, fakes: Fakes, *, shipped: bool = False,
                  extra: dict[str, Any] | None = None) -> System:
    """``python -m sidecar`` from ``tree``; ``shipped``: that tree's own config.yaml as the base."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config: dict[str, Any] = yaml.safe_load((tree / "config.yaml").read_text(encoding="utf-8")) if shipped else {}
    config.setdefault("server", {}).update({"host": "127.0.0.1", "port": port,
                                            "public_url": f"http://127.0.0.1:{port}"})
    config.setdefault("state", {})["path"] = str(workdir / "data" / "connector.db")
    config.setdefault("logging", {})["dir"] = str(workdir / "logs")
    config.setdefault("chatwoot", {}).update({"api_url": fakes.urls["chatwoot"], "api_access_token": TOKEN,
                                              "webhook_secret": SECRET})
    config.setdefault("mcp_crew", {}).update({"api_url": fakes.urls["crew"], "api_key": CREW_KEY})
    if not shipped:
        config["processing"] = {"debounce_seconds": 0.0, "debounce_max_seconds": 0.0}
        config["routing"] = {"default_crew": "suporte", "rules": ROUTES}
    for section, values in (extra or {}).items():
        config.setdefault(section, {}).update(values)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    cmd = [*pin(0), PY, "-m", "sidecar", "--config", str(path)]
    svc = Service(name, cmd, workdir / "sidecar.out", cwd=workdir, marker="sidecar.ready", pythonpath=tree)
    svc.wait_ready()
    return System(name, svc, f"http://127.0.0.1:{port}")


def start_ancestor(workdir: Path, fakes: Fakes) -> System:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {"CHATWOOT_API_URL": fakes.urls["chatwoot"], "CHATWOOT_API_ACCESS_TOKEN": TOKEN,
           "CHATWOOT_WEBHOOK_SECRET": SECRET, "MCP_CREW_API_URL": fakes.urls["chatwootai"],
           "MCP_CREW_API_KEY": CREW_KEY}
    cmd = [*pin(0), GUNICORN, "-w", "4", "-b", f"127.0.0.1:{port}", "--backlog", "4096",
           "bench.ancestor:create_app()"]
    svc = Service("ancestor", cmd, workdir / "gunicorn.out", env=env, marker="Booting worker")
    svc.wait_ready()
    # Every worker must be up before the clock starts (gunicorn prints one line per worker).
    deadline = time.monotonic() + 20
    while len(psutil.Process(svc.proc.pid).children()) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)  # a bench driver waiting for processes to exist, not a test
    return System("ancestor", svc, f"http://127.0.0.1:{port}")


@dataclass
class Feed:
    """One fixed-rate run: what was sent, what came back, and what it cost."""

    rate: float
    sent: dict[int, float]
    """Accepted message's conversation id -> due time (epoch); one message per conversation."""
    replies: dict[int, list[float]]
    """Conversation id -> reply times."""
    feed_end: float
    server_cpu: float
    cpu_window: float
    generator_cpu: float
    non_2xx: int
    intake_p99_ms: float

    @property
    def answered(self) -> int:
        return sum(1 for m in self.sent if m in self.replies)

    def answered_within(self, seconds_after_feed: float) -> int:
        limit = self.feed_end + seconds_after_feed
        return sum(1 for m in self.sent if self.replies.get(m) and min(self.replies[m]) <= limit)

    def latencies(self, minus: float = 0.0) -> list[float]:
        return [min(self.replies[m]) - due - minus for m, due in self.sent.items() if self.replies.get(m)]

    @property
    def doubled(self) -> int:
        return sum(1 for m in self.sent if len(self.replies.get(m, ())) > 1)


_message_ids = iter(range(50_000_000, 10**12, 1_000_000))


def feed(system: System, fakes: Fakes, workdir: Path, *, rate: float, seconds: float, settle: float,
         stop_when_answered: bool = True) -> Feed:
    """Sends ``rate`` new conversations per second for ``seconds``, then collects replies for up
    to ``settle`` seconds after the feed (less once every message is answered)."""
    first = next(_message_ids)
    ledger = workdir / f"ledger-{first}.jsonl"
    fakes.replies()  # drop replies of earlier runs
    cpu_before, wall_before = system.cpu(), time.monotonic()
    cmd = [*pin(1), PY, "-m", "bench.openloop", "--url", system.url + "/webhook/chatwoot", "--secret", SECRET,
           "--rate", f"{rate:g}", "--duration", f"{seconds:g}", "--new-conversations", "--connections", "512",
           "--first-message-id", str(first), "--first-conversation-id", str(first), "--ledger", str(ledger),
           "--timeout", "30"]
    m = run_measured(cmd)
    summary = tagged_json(m.output, "OPENLOOP_JSON")
    rows = [json.loads(line) for line in ledger.read_text().splitlines()]
    sent = {r["conversation_id"]: r["due"] for r in rows if 200 <= r["status"] < 300}
    feed_end = summary["start_wall"] + seconds
    replies: dict[int, list[float]] = {}
    last_reply = feed_end
    deadline = feed_end + settle
    while True:
        for at, conversation in fakes.replies():
            last_reply = max(last_reply, at)
            replies.setdefault(conversation, []).append(at)
        done = all(m in replies for m in sent)
        if (done and stop_when_answered) or time.time() > deadline:
            break
        time.sleep(0.2)  # a bench driver polling the fake's ledger, not a test waiting on state
    # CPU until the last reply (plus the poll interval): the server's whole cost of the feed.
    cpu_after, wall_after = system.cpu(), time.monotonic()
    return Feed(rate=rate, sent=sent, replies=replies, feed_end=feed_end, server_cpu=cpu_after - cpu_before,
                cpu_window=wall_after - wall_before, generator_cpu=m.cpu_share,
                non_2xx=sum(1 for r in rows if not 200 <= r["status"] < 300),
                intake_p99_ms=summary["p99_ms"])


# ------------------------------------------------------------------------------------- scenarios
def systems_for(args: argparse.Namespace, workdir: Path, fakes: Fakes, tag: str,
                shipped: bool = False) -> list[tuple[str, Any]]:
    """(name, starter) for every system this run compares."""
    out: list[tuple[str, Any]] = []
    if args.ancestor and not shipped:
        out.append(("ancestor", lambda: start_ancestor(workdir / f"ancestor-{tag}", fakes)))
    if args.before:
        out.append(("before", lambda: start_sidecar("before", Path(args.before), workdir / f"before-{tag}", fakes,
                                                    shipped=shipped)))
    out.append(("after", lambda: start_sidecar("after", REPO, workdir / f"after-{tag}", fakes, shipped=shipped)))
    return out


def cpu_scenario(args: argparse.Namespace, workdir: Path, results: dict[str, Any]) -> None:
    fakes = Fakes(workdir / "cpu")
    try:
        for name, start in systems_for(args, workdir, fakes, "cpu"):
            system = start()
            try:
                feed(system, fakes, workdir, rate=args.cpu_rate, seconds=2, settle=20)  # warm-up
                runs = [feed(system, fakes, workdir, rate=args.cpu_rate, seconds=args.seconds, settle=60)
                        for _ in range(args.reps)]
            finally:
                system.stop()
            per = [r.server_cpu / max(1, r.answered) * 1e6 for r in runs]
            results.setdefault("cpu", {})[name] = {
                "rate": args.cpu_rate, "us_per_answered": statistics.median(per), "runs_us": per,
                "answered": [r.answered for r in runs], "sent": [len(r.sent) for r in runs],
                "doubled": [r.doubled for r in runs], "generator_cpu": max(r.generator_cpu for r in runs),
            }
            print(f"[capacity] cpu {name}: {statistics.median(per):.0f} µs per answered message", file=sys.stderr)
    finally:
        fakes.stop()


SUSTAIN_P99_SECONDS = 1.0
"""A rate is sustained when every message is answered and 99 % within this long of being sent:
a backlog growing during the feed shows up as growing latency long before the feed ends."""


def sustains(f: Feed, grace: float) -> bool:
    return (bool(f.sent) and f.non_2xx == 0 and f.answered_within(grace) >= len(f.sent)
            and percentile(f.latencies(), 99) <= SUSTAIN_P99_SECONDS)


def sustained_scenario(args: argparse.Namespace, workdir: Path, results: dict[str, Any]) -> None:
    """Bisection on the fixed rate: the highest rate whose messages are all answered within
    ``grace`` seconds after the feed stops."""
    fakes = Fakes(workdir / "sustained")
    grace = args.grace
    try:
        for name, start in systems_for(args, workdir, fakes, "sustained"):
            system = start()
            tried: list[dict[str, Any]] = []
            try:
                feed(system, fakes, workdir, rate=50, seconds=2, settle=20)  # warm-up
                lo, hi = 0.0, float(args.max_rate)
                rate = args.start_rate
                while hi - lo > max(10.0, 0.05 * lo):
                    f = feed(system, fakes, workdir, rate=rate, seconds=args.seconds, settle=grace + 30)
                    ok = sustains(f, grace)
                    tried.append({"rate": rate, "ok": ok, "sent": len(f.sent),
                                  "answered_in_grace": f.answered_within(grace), "answered": f.answered,
                                  "p99_ms": percentile(f.latencies(), 99) * 1000,
                                  "cpu_share": f.server_cpu / f.cpu_window, "generator_cpu": f.generator_cpu})
                    print(f"[capacity] sustained {name}: {rate:.0f}/s -> {'ok' if ok else 'no'}", file=sys.stderr)
                    if ok:
                        lo = rate
                    else:
                        hi = rate
                    rate = (lo + hi) / 2 if lo else rate / 2
            finally:
                system.stop()
            results.setdefault("sustained", {})[name] = {"rate": lo, "tried": tried}
    finally:
        fakes.stop()


def slowcrew_scenario(args: argparse.Namespace, workdir: Path, results: dict[str, Any]) -> None:
    shipped = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    debounce = float((shipped.get("processing") or {}).get("debounce_seconds", 2))
    for latency in args.latencies:
        for rate in args.rates:
            tag = f"slow-{latency:g}s-{rate:g}"
            fakes = Fakes(workdir / tag, crew_latency=latency)
            try:
                for name, start in systems_for(args, workdir, fakes, tag, shipped=True):
                    system = start()
                    try:
                        fakes.reset_crew()
                        window = latency + debounce + 15
                        f = feed(system, fakes, workdir, rate=rate, seconds=args.slow_seconds, settle=window)
                        crew = fakes.crew_figures()
                    finally:
                        system.stop()
                    lat = f.latencies(minus=latency)
                    row = {
                        "latency": latency, "rate": rate, "fed": len(f.sent), "non_2xx": f.non_2xx,
                        "answered_in_window": f.answered_within(window), "window_s": window,
                        "answered_rate": f.answered_within(window) / max(1, len(f.sent)),
                        "extra_p50_ms": percentile(lat, 50) * 1000, "extra_p99_ms": percentile(lat, 99) * 1000,
                        "target_p99_ms": (debounce + 1.5) * 1000, "crew_max_in_flight": crew["max_in_flight"],
                        "crew_requests": crew["requests"], "crew_work": crew["work"],
                        "crew_replays": crew["replays"] + crew["joins"], "doubled_replies": f.doubled,
                        "intake_p99_ms": f.intake_p99_ms, "generator_cpu": f.generator_cpu,
                    }
                    results.setdefault("slowcrew", {}).setdefault(name, []).append(row)
                    print(f"[capacity] slowcrew {name} {latency:g}s {rate:g}/s: "
                          f"{row['answered_in_window']}/{row['fed']} answered, extra p99 "
                          f"{row['extra_p99_ms']:.0f} ms, crew peak {row['crew_max_in_flight']}", file=sys.stderr)
            finally:
                fakes.stop()


# ------------------------------------------------------------------------------------- report
def render(results: dict[str, Any]) -> str:
    out = [f"## Capacity (issue 13) - {results['date']}", "",
           f"- Command: `{results['command']}`",
           f"- Load average before / after: {results['load_before']} / {results.get('load_after', '')}",
           "- Server on CPU 0; fakes and generator on CPU 1; every message opens a new conversation.", ""]
    cpu = results.get("cpu")
    if cpu:
        out += ["### CPU per answered message (server process tree, user+system)", "",
                "| System | rate | µs per answered (median) | runs | answered/sent | doubled |", "|---|---|---|---|---|---|"]
        for name, row in cpu.items():
            out.append(f"| {name} | {row['rate']:g}/s | {row['us_per_answered']:.0f} | "
                       f"{', '.join(f'{x:.0f}' for x in row['runs_us'])} | "
                       f"{sum(row['answered'])}/{sum(row['sent'])} | {sum(row['doubled'])} |")
        if "ancestor" in cpu:
            base = cpu["ancestor"]["us_per_answered"]
            out += ["", "Ratio to the ancestor (CPU per answered; lower is better): " + ", ".join(
                f"{n} {row['us_per_answered'] / base:.2f}" for n, row in cpu.items())]
        out.append("")
    sus = results.get("sustained")
    if sus:
        out += ["### Sustained answered messages per second on one core", "",
                "| System | sustained rate | rates tried (ok?) |", "|---|---|---|"]
        for name, row in sus.items():
            tried = ", ".join(f"{t['rate']:.0f}{'✓' if t['ok'] else '✗'}" for t in row["tried"])
            out.append(f"| {name} | {row['rate']:.0f}/s | {tried} |")
        if "ancestor" in sus and sus["ancestor"]["rate"]:
            base = sus["ancestor"]["rate"]
            out += ["", "Ratio to the ancestor: " + ", ".join(f"{n} {row['rate'] / base:.2f}" for n, row in sus.items())]
        out.append("")
    slow = results.get("slowcrew")
    if slow:
        out += ["### Slow crew, shipped config", "",
                "| System | crew latency | rate | answered/fed in window | reply − crew p50 / p99 (target p99) "
                "| crew peak in flight | crew requests / work | replies doubled | intake p99 |",
                "|---|---|---|---|---|---|---|---|---|"]
        for name, rows in slow.items():
            for r in rows:
                out.append(f"| {name} | {r['latency']:g} s | {r['rate']:g}/s | {r['answered_in_window']}/{r['fed']} "
                           f"({r['window_s']:g} s) | {r['extra_p50_ms']:.0f} / {r['extra_p99_ms']:.0f} ms "
                           f"({r['target_p99_ms']:.0f}) | {r['crew_max_in_flight']} | "
                           f"{r['crew_requests']} / {r['crew_work']} | {r['doubled_replies']} | "
                           f"{r['intake_p99_ms']:.1f} ms |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="cpu,sustained,slowcrew")
    parser.add_argument("--before", default="", help="a checkout of the older sidecar to measure alongside")
    parser.add_argument("--no-ancestor", dest="ancestor", action="store_false")
    parser.add_argument("--seconds", type=float, default=10.0, help="feed length of cpu and sustained runs")
    parser.add_argument("--reps", type=int, default=3, help="cpu runs per system (median)")
    parser.add_argument("--cpu-rate", type=float, default=100.0)
    parser.add_argument("--start-rate", type=float, default=200.0)
    parser.add_argument("--max-rate", type=float, default=3000.0)
    parser.add_argument("--grace", type=float, default=3.0, help="sustained: seconds after the feed to answer all")
    parser.add_argument("--latencies", type=lambda s: [float(x) for x in s.split(",")], default=[2.0, 10.0])
    parser.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",")], default=[40.0, 200.0])
    parser.add_argument("--slow-seconds", type=float, default=10.0)
    parser.add_argument("--workdir", default="")
    parser.add_argument("--json", default="")
    parser.add_argument("--out", default="", help="write the markdown report here (default: print)")
    args = parser.parse_args(argv)
    if args.ancestor and not Path(GUNICORN).exists():
        print("the ancestor needs flask, gunicorn and requests: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setaffinity(0, {1} if pin(1) else set(range(os.cpu_count() or 1)))
    tmp = tempfile.TemporaryDirectory(prefix="sidecar-capacity-")
    workdir = Path(args.workdir or tmp.name)
    results: dict[str, Any] = {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                               "command": shlex.join(["python", "-m", "bench.capacity", *(argv or sys.argv[1:])]),
                               "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    scenarios = {"cpu": cpu_scenario, "sustained": sustained_scenario, "slowcrew": slowcrew_scenario}
    try:
        for name in args.only.split(","):
            started = time.monotonic()
            print(f"[capacity] {name} ...", file=sys.stderr, flush=True)
            scenarios[name](args, workdir, results)
            print(f"[capacity] {name} done in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    finally:
        results["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    report = render(results)
    if args.out:
        Path(args.out).write_text(report + "\n", encoding="utf-8")
    print(report)
    invalid = [n for n, r in (results.get("cpu") or {}).items() if r["generator_cpu"] > CPU_LIMIT]
    if invalid:
        print(f"INVALID: the generator saturated its core in {', '.join(invalid)}", file=sys.stderr)
    shutil.rmtree(workdir / "unused", ignore_errors=True)
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
