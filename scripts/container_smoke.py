"""The running-container half of ``scripts/container-smoke`` (issue 9).

Started by the bash script once the image is built. It runs the demo's simulated Chatwoot and
MCP-Crew on the host (127.0.0.1), starts the image with ``--network host`` so the sidecar
reaches them, and checks, printing one ``PASS``/``FAIL`` line per check:

- ``healthy``: the image's own HEALTHCHECK passes (``podman healthcheck run``, or Docker's
  health status), and how long after ``run`` it did;
- ``webhooks-answered``: signed webhooks from the host are accepted and answered through the
  simulated Chatwoot's API, by crews on the simulated MCP-Crew (the demo's Instagram inbox is in
  draft mode: there the answer is a suggested-reply note and nothing reaches the customer); a
  wrongly signed one gets 401;
- ``console-reads-volume`` and ``console-starts``: the console from the same image opens the
  volume's database (its own read-only reader sees the conversations), and
  ``python -m console --db /data/connector.db`` starts under a pseudo-terminal, draws its
  overview without a database problem and quits with ``q`` (exit status 0);
- ``restart-keeps-state``: after a restart the rows are still there, earlier conversations are
  not answered twice, and a new webhook is answered;
- ``non-root`` and ``writes-only-data``: the process runs as uid 10001 and cannot write to the
  code, the config or the system, only to /data (and the usual scratch folders).

The container, like every database read, runs as the image's user: the host never opens the
SQLite file itself, so it cannot leave root-owned ``-wal``/``-shm`` files behind.
Exits 1 at the first failed check, with a line that says what went wrong.

Over 400 lines on purpose: a script of checks run in order against one running container,
each check a short function next to the ones it depends on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import pty
import re
import secrets
import select
import socket
import struct
import subprocess
import sys
import termios
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from demo import demo_settings, simulator_wiring  # noqa: E402
from sidecar.config import config_from_mapping, deep_merge  # noqa: E402
from sidecar.outbound.steps import DRAFT_PREFIX  # noqa: E402
from simulators import FakeChatwoot, FakeConversation, FakeCrew  # noqa: E402
from simulators.signing import webhook_headers  # noqa: E402

RUNTIME_UID = "10001"
HEALTH_DEADLINE = 90.0
ANSWER_DEADLINE = 45.0
CONSOLE_DEADLINE = 60.0
POLL_SECONDS = 0.25
# Inboxes the demo's settings put in draft mode (answers there are notes for the agents).
DRAFT_INBOXES = frozenset(inbox for inbox, settings in demo_settings(Path("/data")).get("inboxes", {}).items()
                          if settings.get("mode") == "draft")

# Messages that the demo's routing rules send to crews on the simulated MCP-Crew (not to the
# local `faq` crew), one per channel.
FIRST_WAVE = (
    ("whatsapp", "Olá, quanto custa a barraca Trail 2P?"),
    ("facebook", "Hi, where is my order #48649? It hasn't arrived yet."),
    ("instagram", "Vocês têm desconto para comprar duas mochilas?"),
    ("webwidget", "Hello, I would like to buy a sleeping bag, what is the price?"),
)

# Places outside /data that any unprivileged user may write to in a Debian image: scratch
# folders (world-writable, sticky; /var/lock is a link to /run/lock) and the user's own empty
# home. Anything else fails.
SCRATCH = ("/tmp", "/var/tmp", "/run/lock", "/var/lock", "/dev/shm", "/home/connector")


class CheckFailed(Exception):
    def __init__(self, check: str, message: str) -> None:
        super().__init__(f"{check}: {message}")
        self.check = check
        self.message = message


def passed(check: str, message: str) -> None:
    print(f"PASS {check}: {message}", flush=True)


@dataclass
class Proc:
    status: int
    out: str


class Engine:
    """podman or docker through their command lines, without blocking the event loop."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def run(self, *args: str, timeout: float = 120.0) -> Proc:
        proc = await asyncio.create_subprocess_exec(
            self.name, *args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return Proc(124, f"{self.name} {' '.join(args[:2])}: no answer within {timeout:g} s")
        return Proc(proc.returncode or 0, out.decode("utf-8", "replace").strip())

    async def healthy_once(self, container: str) -> tuple[bool, str]:
        """One evaluation of the image's HEALTHCHECK."""
        if self.name == "podman":
            # Runs the HEALTHCHECK command from the image once (there is no systemd timer here).
            result = await self.run("healthcheck", "run", container, timeout=30)
            return result.status == 0, result.out
        result = await self.run("inspect", "--format", "{{json .State.Health}}", container, timeout=30)
        try:
            health = json.loads(result.out)
        except ValueError:
            return False, result.out
        log = (health.get("Log") or [{}])[-1] if isinstance(health, dict) else {}
        return (isinstance(health, dict) and health.get("Status") == "healthy",
                str(log.get("Output", "")).strip()[-300:])

    async def state(self, container: str) -> str:
        result = await self.run("inspect", "--format", "{{.State.Status}}, exit code {{.State.ExitCode}}", container)
        return result.out


async def wait_healthy(engine: Engine, container: str, started: float) -> float:
    """Seconds from ``started`` until the HEALTHCHECK passes; raises CheckFailed at the deadline."""
    deadline = started + HEALTH_DEADLINE
    last = ""
    while time.monotonic() < deadline:
        ok, last = await engine.healthy_once(container)
        if ok:
            return time.monotonic() - started
        state = await engine.state(container)
        if not state.startswith("running") and not state.startswith("created"):
            logs = await engine.run("logs", "--tail", "15", container)
            raise CheckFailed("healthy", f"the container stopped ({state}); its last log lines:\n{logs.out}")
        await asyncio.sleep(POLL_SECONDS)
    logs = await engine.run("logs", "--tail", "15", container)
    raise CheckFailed("healthy", f"HEALTHCHECK still failing after {HEALTH_DEADLINE:g} s ({last[-200:]!r}); "
                                 f"last log lines:\n{logs.out}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_config(path: Path, chatwoot: FakeChatwoot, crew: FakeCrew, port: int) -> None:
    """The demo's settings wired to the host's simulators, with the container's paths."""
    raw = deep_merge(demo_settings(Path("/data")), simulator_wiring(chatwoot, crew))
    raw = deep_merge(raw, {
        # --network host: listen on loopback only; the simulators and the checks are local.
        "server": {"host": "127.0.0.1", "port": port, "public_url": f"http://127.0.0.1:{port}",
                   "admin_token": secrets.token_urlsafe(32)},
        "state": {"path": "/data/connector.db"},
        "logging": {"dir": "/data/logs"},
        "processing": {"debounce_seconds": 0.3, "debounce_max_seconds": 1.0},
        "health": {"probe_interval_seconds": 2},
    })
    config_from_mapping(raw, {})  # the sidecar would refuse an invalid file: fail here instead
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("# Written by scripts/container_smoke.py for one run; the tokens are throwaway.\n")
        yaml.safe_dump(raw, out, sort_keys=False, allow_unicode=True)
    # Readable by the image's user only, as an operator would mount a secret-bearing file.
    # Without root (Docker mode) it cannot be given away: then readable by all, in a private folder.
    try:
        os.chown(path, int(RUNTIME_UID), int(RUNTIME_UID))
    except PermissionError:
        os.chmod(path, 0o644)


def answers(chatwoot: FakeChatwoot, conv: FakeConversation) -> list[str | None]:
    """What the sidecar answered in a conversation: its public replies, or in a draft inbox (the
    demo's Instagram) its suggested-reply notes."""
    if conv.inbox.id in DRAFT_INBOXES:
        return [n for n in chatwoot.notes(conv.id) if (n or "").startswith(DRAFT_PREFIX)]
    return chatwoot.replies(conv.id)


async def say_and_wait(chatwoot: FakeChatwoot, crew: FakeCrew, wave: list[tuple[FakeConversation, str]],
                       check: str) -> None:
    """Each message is accepted (200) and each conversation gets one more answer."""
    before = {conv.id: len(answers(chatwoot, conv)) for conv, _ in wave}
    crew_before = len(crew.crew_requests())
    for conv, text in wave:
        status, body = await chatwoot.customer_says(conv, text)
        if status != 200 or not isinstance(body, dict) or body.get("status") != "accepted":
            raise CheckFailed(check, f"webhook for conversation {conv.id} answered {status} {body!r}")
    try:
        await chatwoot.wait_for(lambda: all(len(answers(chatwoot, c)) > before[c.id] for c, _ in wave),
                                timeout=ANSWER_DEADLINE)
    except TimeoutError as exc:
        missing = [c.id for c, _ in wave if len(answers(chatwoot, c)) <= before[c.id]]
        raise CheckFailed(check, f"no reply within {ANSWER_DEADLINE:g} s in conversations {missing}: {exc}") from None
    if len(crew.crew_requests()) < crew_before + len(wave):
        raise CheckFailed(check, f"only {len(crew.crew_requests()) - crew_before} crew requests reached the "
                                 f"simulated MCP-Crew for {len(wave)} conversations")


async def wrong_signature_refused(url: str) -> int:
    body = json.dumps({"event": "message_created", "id": 1, "message_type": "incoming",
                       "content": "forged", "private": False}).encode()
    headers = webhook_headers(body, delivery_id=str(uuid.uuid4()), secret="not-the-secret",
                              timestamp=int(time.time()))
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as resp:
        return resp.status


# The console's own reader, in the image, on the volume: what the console's screens are built from.
READER_PROBE = """
import json
from console.reader import Reader
from console.snapshots import ConversationQuery
reader = Reader('/data/connector.db')
reader.check()
page = reader.conversations(ConversationQuery(page_size=200))
print(json.dumps({'total': page.total, 'ids': sorted(r.conversation_id for r in page.rows)}))
reader.close()
"""


async def read_volume(engine: Engine, image: str, data: str, name: str, check: str) -> dict[str, Any]:
    result = await engine.run("run", "--rm", "--no-healthcheck", "--name", name, "--network", "none", "-v", f"{data}:/data",
                              image, "python", "-c", READER_PROBE, timeout=60)
    if result.status != 0:
        raise CheckFailed(check, f"the console's reader could not open /data/connector.db:\n{result.out}")
    try:
        doc = json.loads(result.out.splitlines()[-1])
    except (ValueError, IndexError):
        raise CheckFailed(check, f"unexpected reader output: {result.out!r}") from None
    return doc


_ANSI = re.compile(r"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[()][A-Za-z0-9]|\x1b[=>78MDEc]")


def console_under_pty(engine: str, image: str, data: str, name: str) -> tuple[int | None, str]:
    """Runs ``python -m console --db /data/connector.db`` on a 120x40 pseudo-terminal.

    Waits until its screen shows the overview's title and no database problem, presses ``q``,
    and returns (exit status or None if it did not stop, the text it drew).
    """
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        [engine, "run", "--rm", "-it", "--no-healthcheck", "--name", name, "--network", "none", "-e", "TERM=xterm-256color",
         "-v", f"{data}:/data", image, "python", "-m", "console", "--db", "/data/connector.db"],
        stdin=slave, stdout=slave, stderr=slave, close_fds=True, start_new_session=True)
    os.close(slave)
    raw = bytearray()
    deadline = time.monotonic() + CONSOLE_DEADLINE
    quit_sent = False
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the other side closed: the process has ended
                    break
                if not chunk:
                    break
                raw += chunk
                if b"\x1b[6n" in chunk:  # a cursor-position query: answer as a terminal would
                    os.write(master, b"\x1b[1;1R")
            text = _ANSI.sub("", raw.decode("utf-8", "replace"))
            if not quit_sent and "Overview" in text and "Dead letters" in text:
                problem = "No database" in text or "Cannot read database" in text
                if problem:
                    break
                # A moment for the first refresh to read the database, then quit like an operator.
                time.sleep(1.5)
                os.write(master, b"q")
                quit_sent = True
            if proc.poll() is not None:
                break
        if not quit_sent:
            proc.terminate()
        try:
            status: int | None = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            status = None
        # Whatever it still drew while quitting.
        with contextlib.suppress(OSError):
            while select.select([master], [], [], 0.2)[0]:
                chunk = os.read(master, 65536)
                if not chunk:
                    break
                raw += chunk
    finally:
        os.close(master)
    text = _ANSI.sub("", raw.decode("utf-8", "replace"))
    return (status if quit_sent else None), text


def screen_excerpt(text: str, limit: int = 600) -> str:
    flat = re.sub(r"\s+", " ", "".join(ch if ch.isprintable() or ch.isspace() else " " for ch in text))
    return flat[-limit:]


async def run_checks(args: argparse.Namespace) -> None:
    engine = Engine(args.engine)
    work = Path(args.work)
    chatwoot = FakeChatwoot(token=secrets.token_urlsafe(24), webhook_secret=secrets.token_urlsafe(24))
    crew = FakeCrew(api_key=secrets.token_urlsafe(24))
    await chatwoot.start()
    await crew.start()
    try:
        port = free_port()
        config = work / "config.yaml"
        write_config(config, chatwoot, crew, port)
        chatwoot.webhook_url = f"http://127.0.0.1:{port}/webhook/chatwoot"
        run_args = ["run", "-d", "--name", args.name, "--network", "host",
                    "-v", f"{args.data}:/data", "-v", f"{config}:/app/config.yaml:ro",
                    # The HEALTHCHECK reads the port from here (the Dockerfile's command).
                    "-e", f"SIDECAR_PORT={port}"]
        if args.engine == "podman":
            run_args += ["--health-interval", "disable"]  # no systemd timer here: run it by hand
        else:
            run_args += ["--health-interval", "1s"]  # the image's 30 s would only slow the check
        started = time.monotonic()
        result = await engine.run(*run_args, args.image)
        if result.status != 0:
            raise CheckFailed("run", f"{args.engine} run failed:\n{result.out}")
        to_healthy = await wait_healthy(engine, args.name, started)
        passed("healthy", f"HEALTHCHECK passed {to_healthy:.1f} s after `{args.engine} run` "
                          f"(sidecar on 127.0.0.1:{port}, /data = {args.data})")
        print(f"run-to-healthy: {to_healthy:.1f} s", flush=True)

        # -- webhooks in, answers out through the simulated Chatwoot and MCP-Crew
        conversations = [(chatwoot.open_conversation(channel), text) for channel, text in FIRST_WAVE]
        await say_and_wait(chatwoot, crew, conversations, "webhooks-answered")
        spoken = [conv.id for conv, _ in conversations if conv.inbox.id in DRAFT_INBOXES and chatwoot.replies(conv.id)]
        if spoken:
            raise CheckFailed("webhooks-answered", f"conversations {spoken} are in a draft inbox, yet the bot "
                                                   f"replied to the customer")
        refused = await wrong_signature_refused(chatwoot.webhook_url)
        if refused != 401:
            raise CheckFailed("webhooks-answered", f"a wrongly signed webhook got {refused}, not 401")
        sample = chatwoot.replies(conversations[0][0].id)[-1] or ""
        passed("webhooks-answered", f"{len(conversations)} signed webhooks (whatsapp, facebook, instagram, "
                                    f"webwidget) answered through the simulated Chatwoot by MCP-Crew crews "
                                    f"(instagram's, a draft inbox, as a suggested-reply note only) "
                                    f"({len(crew.crew_requests())} crew requests; e.g. {sample[:50]!r}); "
                                    f"a wrong signature got 401")

        # -- the console from the same image, on the same volume, while the sidecar runs
        doc = await read_volume(engine, args.image, args.data, f"{args.name}-console", "console-reads-volume")
        expected = sorted(conv.id for conv, _ in conversations)
        if doc.get("total") != len(expected) or doc.get("ids") != expected:
            raise CheckFailed("console-reads-volume", f"the console's reader sees {doc}, expected conversations "
                                                      f"{expected}")
        passed("console-reads-volume", f"the console's reader in the image opened /data/connector.db read-only "
                                       f"and sees conversations {expected}")
        status, screen = await asyncio.to_thread(console_under_pty, args.engine, args.image, args.data,
                                                 f"{args.name}-console")
        problem = next((line for line in screen.splitlines()
                        if any(m in line for m in ("No database", "Cannot read database", "Database unavailable"))), "")
        if status != 0 or problem:
            what = ("did not draw its overview" if status is None else f"exited with status {status}"
                    if status else f"showed a database problem: {problem.strip()[:200]}")
            raise CheckFailed("console-starts", f"`python -m console --db /data/connector.db` {what}; "
                                                f"its screen ended with: {screen_excerpt(screen)!r}")
        passed("console-starts", "`python -m console --db /data/connector.db` drew its overview on a "
                                 "pseudo-terminal without a database problem and quit with `q` (status 0)")

        # -- restart: the same rows, nothing answered twice, and new traffic answered
        replies_before = {conv.id: len(answers(chatwoot, conv)) for conv, _ in conversations}
        started = time.monotonic()
        result = await engine.run("restart", args.name, timeout=60)
        if result.status != 0:
            raise CheckFailed("restart-keeps-state", f"{args.engine} restart failed:\n{result.out}")
        after_restart = await wait_healthy(engine, args.name, started)
        doc = await read_volume(engine, args.image, args.data, f"{args.name}-console", "restart-keeps-state")
        if doc.get("ids") != expected:
            raise CheckFailed("restart-keeps-state", f"after the restart the database holds {doc}, "
                                                     f"expected conversations {expected}")
        new_conv = chatwoot.open_conversation("whatsapp")
        again = conversations[1][0]
        await say_and_wait(chatwoot, crew, [(new_conv, "Qual o preço da lanterna de cabeça?"),
                                            (again, "And can you tell me the price of the tent?")],
                           "restart-keeps-state")
        doubled = [conv.id for conv, _ in conversations if conv.id != again.id
                   and len(answers(chatwoot, conv)) != replies_before[conv.id]]
        if doubled:
            raise CheckFailed("restart-keeps-state", f"conversations {doubled} were answered again after the restart")
        doc = await read_volume(engine, args.image, args.data, f"{args.name}-console", "restart-keeps-state")
        if new_conv.id not in doc.get("ids", []) or doc.get("total") != len(expected) + 1:
            raise CheckFailed("restart-keeps-state", f"the new conversation is not stored: {doc}")
        passed("restart-keeps-state", f"healthy again {after_restart:.1f} s after `{args.engine} restart`; "
                                      f"conversations {expected} still stored, none answered twice; a new "
                                      f"conversation and an earlier one answered after the restart")

        # -- who the process runs as
        uid = await engine.run("exec", args.name, "id", "-u")
        pid1 = await engine.run("exec", args.name, "sh", "-c", "grep -E '^(Uid|Gid):' /proc/1/status")
        pid1_ids = {field for line in pid1.out.splitlines() for field in line.split()[1:]}
        if uid.out != RUNTIME_UID or pid1_ids != {RUNTIME_UID}:
            raise CheckFailed("non-root", f"`id -u` says {uid.out!r}; the main process has {pid1.out!r}")
        passed("non-root", f"`exec id -u` = {uid.out}; the sidecar process (pid 1) runs with uid and gid "
                           f"{RUNTIME_UID} (real, effective, saved, fs)")

        # -- where it can write
        denied = ("/app/x", "/app/config.yaml", "/tmp/../etc/x", "/usr/local/bin/x", "/opt/venv/x",
                  "/opt/venv/lib/x", "/x")
        writable = []
        for target in denied:
            probe = await engine.run("exec", args.name, "touch", target)
            if probe.status == 0:
                writable.append(target)
        data_probe = await engine.run("exec", args.name, "sh", "-c", "touch /data/.smoke && rm /data/.smoke")
        if writable or data_probe.status != 0:
            raise CheckFailed("writes-only-data", f"writable outside /data: {writable}; /data writable: "
                                                  f"{data_probe.status == 0} {data_probe.out}")
        # Everything the process could write, on the image's own file system (/data is another mount).
        found = await engine.run("exec", args.name, "sh", "-c",
                                 "find / -xdev \\( -path /proc -o -path /sys \\) -prune -o -writable -print "
                                 "2>/dev/null; true", timeout=60)
        outside = sorted({path for path in found.out.splitlines()
                          if path and path != "/data" and not any(path == s or path.startswith(s + "/") for s in SCRATCH)})
        if outside:
            raise CheckFailed("writes-only-data", f"the runtime user can write to {outside[:10]}")
        passed("writes-only-data", f"touch fails on {', '.join(denied)}; works in /data; nothing else on the "
                                   f"image's file system is writable except the scratch folders and the "
                                   f"user's home ({', '.join(SCRATCH)})")
    finally:
        await crew.stop()
        await chatwoot.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("podman", "docker"), required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--name", required=True, help="container name (NAME-console is used too)")
    parser.add_argument("--data", required=True, help="host folder mounted at /data, owned by uid 10001")
    parser.add_argument("--work", required=True, help="folder for the generated config.yaml")
    args = parser.parse_args()
    try:
        asyncio.run(run_checks(args))
    except CheckFailed as exc:
        print(f"FAIL {exc.check}: {exc.message}", flush=True)
        if "log lines" not in exc.message:
            # The sidecar's own account of what went wrong, if its container still exists.
            logs = subprocess.run([args.engine, "logs", "--tail", "20", args.name], capture_output=True,
                                  text=True, timeout=30, check=False)
            if logs.returncode == 0:
                print("---- the sidecar container's last log lines\n" + (logs.stdout + logs.stderr).strip(),
                      flush=True)
        return 1
    except Exception:  # a bug here, not in the image: say so, with the traceback
        traceback.print_exc()
        print("FAIL smoke-helper: scripts/container_smoke.py itself failed (traceback above)", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
