"""``python -m sidecar --demo``: real traffic with nothing else installed, and a clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import stat
import sys
from pathlib import Path

import aiohttp
import pytest

from state import open_database
from tests.harness import REPO, free_port
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(180)

SUMMARY = re.compile(r"^demo summary: (.*)$")
HEALTH = re.compile(r"curl (http://127\.0\.0\.1:\d+)/health")


class DemoProcess:
    """The demo as a newcomer runs it, in its own working folder; output read line by line."""

    def __init__(self, workdir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.args = args
        self.extra_env = env or {}
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self._changed = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> DemoProcess:
        # The operator's own connector variables must not leak in (nor do they change the demo).
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SIDECAR_", "CHATWOOT_", "MCP_CREW_", "DEMO_"))}
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = str(REPO)  # the checkout under test, from a foreign working folder
        env.update(self.extra_env)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sidecar", "--demo", *self.args, cwd=str(self.workdir), env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            async with self._changed:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    async def wait_line(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        def found() -> re.Match[str] | None:
            return next((m for m in map(pattern.search, self.lines) if m), None)

        def done() -> bool:
            return found() is not None or (self._reader is not None and self._reader.done())

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(done), timeout)
            except TimeoutError:
                pass
        match = found()
        if match is None:
            raise AssertionError(f"no line matching {pattern.pattern!r} within {timeout}s; output:\n"
                                 + "\n".join(self.lines[-40:]))
        return match

    async def stop(self, sig: int, timeout: float = 60.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 10)
        return code

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()

    def summary(self) -> dict[str, int]:
        for line in self.lines:
            match = SUMMARY.match(line)
            if match:
                return {key: int(value) for key, value in (pair.split("=") for pair in match.group(1).split())}
        raise AssertionError("no summary line; output:\n" + "\n".join(self.lines[-40:]))


def bot_rows(db: Path) -> int:
    store = open_database(str(db), readonly=True)
    try:
        return int(store.read(lambda tx: tx.sql.scalar("SELECT count(*) FROM messages WHERE role = 'bot'")))
    finally:
        store.close()


async def run_until_answered(workdir: Path, sig: int, env: dict[str, str] | None = None) -> DemoProcess:
    """Start the demo, see a bot reply in its feed and a healthy /health, stop it with ``sig``."""
    demo = await DemoProcess(workdir, "--demo-rate", "8", "--port", str(free_port()), env=env).start()
    try:
        base = (await demo.wait_line(HEALTH, timeout=30)).group(1)
        # The feed prints every message the simulated Chatwoot stores; "bot <" is a reply the
        # sidecar posted through the simulated Chatwoot's REST API.
        await demo.wait_line(re.compile(r"\sbot\s+< \S"), timeout=60)
        async with aiohttp.ClientSession() as session, session.get(base + "/health") as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["checks"]["database"]["status"] == "ok"
        code = await demo.stop(sig)
    finally:
        await demo.kill()
    assert code == 0, "\n".join(demo.lines[-40:])
    return demo


async def test_demo_answers_customers_and_stops_cleanly(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) ends a demo that answered customers; a second run in the same folder
    starts from a fresh database, is answered too, and stops on SIGTERM."""
    # An operator's real settings in the environment change nothing: the demo's state stays in
    # ./demo-data and its calls go to the simulators.
    operator = tmp_path / "operator"
    first = await run_until_answered(tmp_path, signal.SIGINT, env={
        "SIDECAR_DB": str(operator / "connector.db"), "SIDECAR_LOG_DIR": str(operator / "logs"),
        "CHATWOOT_API_URL": "http://127.0.0.1:9", "MCP_CREW_API_URL": "http://127.0.0.1:9/crew"})
    assert not operator.exists()
    figures = first.summary()
    assert figures["customer_messages"] > 0 and figures["replies"] > 0, figures
    assert figures["defects"] == 0, first.lines[-40:]
    assert any("-m console --db demo-data/connector.db" in line for line in first.lines)

    db = tmp_path / "demo-data" / "connector.db"
    replies_stored = bot_rows(db)
    # Every reply the simulated Chatwoot recorded is in the state database (and maybe a reply
    # that was recorded just before the summary was taken).
    assert replies_stored >= figures["replies"] > 0
    store = open_database(str(db), readonly=True)
    try:
        deliveries = store.read(lambda tx: tx.sql.scalar("SELECT count(*) FROM deliveries"))
        answered = store.read(lambda tx: tx.sql.scalar("SELECT count(*) FROM jobs WHERE state = 'done'"))
        channels = set(store.read(lambda tx: tx.sql.column("SELECT DISTINCT channel FROM conversations")))
    finally:
        store.close()
    assert deliveries >= figures["customer_messages"] and answered > 0
    assert channels <= {"whatsapp", "facebook", "instagram", "webwidget"} and len(channels) >= 2, channels
    assert (tmp_path / "demo-data" / "logs" / "chatwoot_mcp_connector.log").stat().st_size > 0
    # The generated config holds this run's throwaway tokens: owner-only.
    mode = stat.S_IMODE((tmp_path / "demo-data" / "demo-config.yaml").stat().st_mode)
    assert mode & 0o077 == 0, oct(mode)

    second = await run_until_answered(tmp_path, signal.SIGTERM)
    replies = second.summary()["replies"]
    assert replies > 0
    # Only this run's rows: the previous simulated Chatwoot's conversations are gone with it.
    assert bot_rows(db) >= replies
    store = open_database(str(db), readonly=True)
    try:
        assert store.read(lambda tx: tx.sql.scalar("SELECT count(*) FROM jobs WHERE state = 'dead'")) == 0
    finally:
        store.close()


async def test_demo_never_touches_a_database_it_did_not_create(tmp_path: Path) -> None:
    """A database in DEMO_DATA_DIR that no demo wrote is refused, never replaced."""
    foreign = tmp_path / "real"
    foreign.mkdir()
    (foreign / "connector.db").write_bytes(b"operator's state")
    demo = await DemoProcess(tmp_path, "--port", str(free_port()),
                             env={"DEMO_DATA_DIR": str(foreign)}).start()
    try:
        assert await asyncio.wait_for(demo.proc.wait(), 30) == 2  # type: ignore[union-attr]
        await asyncio.wait_for(demo._reader, 10)  # type: ignore[arg-type]
    finally:
        await demo.kill()
    assert "was not written by the demo" in demo.lines[-1], demo.lines
    assert (foreign / "connector.db").read_bytes() == b"operator's state"
    assert sorted(p.name for p in foreign.iterdir()) == ["connector.db"]  # not even a lock file


async def test_demo_refuses_a_bad_rate(tmp_path: Path) -> None:
    demo = await DemoProcess(tmp_path, "--demo-rate", "0").start()
    try:
        assert await asyncio.wait_for(demo.proc.wait(), 30) == 2  # type: ignore[union-attr]
        await asyncio.wait_for(demo._reader, 10)  # type: ignore[arg-type]
    finally:
        await demo.kill()
    assert demo.lines and demo.lines[-1].startswith("config error: demo rate"), demo.lines
    assert not any("Traceback" in line for line in demo.lines)


async def test_demo_shows_draft_and_shadow_traffic(tmp_path: Path) -> None:
    """Instagram runs in draft mode (the feed shows the bot's private suggested-reply notes) and
    WhatsApp has a shadow crew whose answers land in the state, never in the simulated Chatwoot."""
    demo = await DemoProcess(tmp_path, "--demo-rate", "8", "--port", str(free_port())).start()
    try:
        await demo.wait_line(HEALTH, timeout=30)
        await demo.wait_line(re.compile(r"^\s+instagram\s+#\d+\s+bot note\s+✎ Suggested reply \(draft"), timeout=90)
        db = tmp_path / "demo-data" / "connector.db"

        def shadow_answers() -> int:
            store = open_database(str(db), readonly=True)
            try:
                return int(store.read(lambda tx: tx.sql.scalar(
                    "SELECT count(*) FROM outcomes WHERE kind='shadow' AND crew='whatsapp_crew_v2'")))
            finally:
                store.close()

        await wait_until(shadow_answers, timeout=60, what="a shadow answer recorded")
        assert await demo.stop(signal.SIGTERM) == 0
    finally:
        await demo.kill()
    # Nothing the bot said reached a customer of the draft inbox (the Instagram inbox, id 23).
    store = open_database(str(tmp_path / "demo-data" / "connector.db"), readonly=True)
    try:
        assert store.read(lambda tx: tx.sql.scalar(
            "SELECT count(*) FROM messages m JOIN conversations c ON c.account_id=m.account_id "
            "AND c.conversation_id=m.conversation_id WHERE c.inbox_id=23 AND m.role='bot'")) == 0
        assert store.read(lambda tx: tx.sql.scalar("SELECT count(*) FROM outcomes WHERE kind='draft'")) > 0
    finally:
        store.close()
