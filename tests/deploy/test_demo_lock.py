"""One demo per data folder: a second ``--demo`` in the same folder refuses to start, in one
line and with status 2, and leaves the running one's database, config and tokens alone."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

import aiohttp
import pytest

from tests.deploy.test_demo import HEALTH, DemoProcess
from tests.harness import free_port

pytestmark = pytest.mark.timeout(180)

BOT_REPLY = re.compile(r"\sbot\s+< \S")


def _fingerprint(data: Path) -> dict[str, object]:
    """What the second demo used to destroy: the database file itself and the run's tokens."""
    db = (data / "connector.db").stat()
    return {"db": (db.st_ino, db.st_dev), "config": (data / "demo-config.yaml").read_bytes(),
            "admin_token": (data / "admin-token").read_bytes()}


async def _refused(workdir: Path) -> DemoProcess:
    second = await DemoProcess(workdir, "--port", str(free_port())).start()
    try:
        assert await asyncio.wait_for(second.proc.wait(), 30) == 2  # type: ignore[union-attr]
        await asyncio.wait_for(second._reader, 10)  # type: ignore[arg-type]
    finally:
        await second.kill()
    return second


async def test_a_second_demo_in_the_same_folder_refuses_and_changes_nothing(tmp_path: Path) -> None:
    first = await DemoProcess(tmp_path, "--demo-rate", "8", "--port", str(free_port())).start()
    try:
        base = (await first.wait_line(HEALTH, timeout=30)).group(1)
        await first.wait_line(BOT_REPLY, timeout=60)
        data = tmp_path / "demo-data"
        before = _fingerprint(data)

        second = await _refused(tmp_path)
        assert len(second.lines) == 1, second.lines
        assert re.fullmatch(r"error: demo-data is in use by another demo \(pid \d+\): stop that one, or give "
                            r"this one its own folder with DEMO_DATA_DIR=<folder>", second.lines[0]), second.lines
        assert f"pid {first.proc.pid}" in second.lines[0]  # type: ignore[union-attr]

        assert _fingerprint(data) == before
        async with aiohttp.ClientSession() as session, session.get(base + "/health") as resp:
            body = await resp.json()
        assert body["checks"]["database"]["status"] == "ok", body
        # The first demo still accepts its own simulator's webhooks and answers them.
        replies_before = sum(1 for line in first.lines if BOT_REPLY.search(line))

        def answered_again() -> bool:
            return sum(1 for line in first.lines if BOT_REPLY.search(line)) > replies_before

        async with first._changed:
            await asyncio.wait_for(first._changed.wait_for(answered_again), 60)
        code = await first.stop(signal.SIGINT)
    finally:
        await first.kill()
    assert code == 0, first.lines[-20:]
    summary = first.summary()
    assert summary["webhook_errors"] == 0 and summary["defects"] == 0, summary


async def test_the_folder_is_free_again_once_the_demo_is_gone_even_after_a_kill(tmp_path: Path) -> None:
    """The lock is the process's: nothing stale stays behind a crash (SIGKILL)."""
    first = await DemoProcess(tmp_path, "--port", str(free_port())).start()
    try:
        await first.wait_line(HEALTH, timeout=30)
    finally:
        await first.kill()
    assert (tmp_path / "demo-data" / "demo.lock").exists()
    again = await DemoProcess(tmp_path, "--port", str(free_port())).start()
    try:
        await again.wait_line(HEALTH, timeout=30)
        assert await again.stop(signal.SIGTERM) == 0
    finally:
        await again.kill()
