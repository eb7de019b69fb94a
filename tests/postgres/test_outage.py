"""The sidecar on PostgreSQL: a wrong URL or an unreachable server at start-up (exit 2, one line,
no password), an outage later (503 on intake, never a 2xx before the commit; /health down; back
by itself), and the password masked in GET /config and absent from the log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import psycopg
import pytest

from simulators import FakeChatwoot, FakeCrew
from tests import backends
from tests.harness import ADMIN_TOKEN, REPO, free_port
from tests.reliability.helpers import (
    Ledger,
    health,
    jobs,
    open_jobs,
    post_delivery,
    signed_delivery,
    stored_delivery_ids,
)
from tests.waiting import wait_until

PASSWORD = "connector-test-pw-7f3a"


def _run_sidecar(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "config.yaml"
    config.write_text(f"server: {{host: 127.0.0.1, port: {free_port()}}}\nlogging: {{dir: {tmp_path / 'logs'}}}\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SIDECAR_", "CHATWOOT_", "MCP_CREW_"))}
    return subprocess.run([sys.executable, "-m", "sidecar", "--config", str(config)], cwd=str(REPO),
                          env={**clean, **env}, capture_output=True, text=True, timeout=60)


def test_a_wrong_url_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    done = _run_sidecar(tmp_path, {"SIDECAR_DATABASE_URL": "mysql://app:hunter2-secret@db/app"})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("config error: state.database_url: "), done.stderr
    assert "hunter2-secret" not in done.stderr + done.stdout


def test_an_unreachable_server_at_start_exits_2_with_one_line(tmp_path: Path) -> None:
    url = f"postgresql://connector:hunter2-secret@127.0.0.1:{free_port()}/connector"
    done = _run_sidecar(tmp_path, {"SIDECAR_DATABASE_URL": url})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: state.database_url: cannot connect"), done.stderr
    assert "hunter2-secret" not in done.stderr + done.stdout


def _database(proc_location: str) -> str:
    return urlsplit(proc_location).path.strip("/")


def _set_reachable(name: str, reachable: bool) -> None:
    """An outage of one database: no new connections, and every open one cut."""
    with psycopg.connect(backends.server_url(), autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {"true" if reachable else "false"}')
        if not reachable:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname=%s", (name,))


@pytest.mark.slow
async def test_an_outage_is_503_and_down_then_recovers_by_itself(
    process_factory, chatwoot: FakeChatwoot, crew: FakeCrew, tmp_path: Path
) -> None:
    url = backends.state_location(tmp_path / "pg", backends.POSTGRES)
    proc = await process_factory({"state": {"database_url": url}})
    name = _database(url)
    ledger = Ledger()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        async def send(count: int) -> list[int | None]:
            out = []
            for _ in range(count):
                conv = chatwoot.open_conversation("whatsapp")
                delivery, body, headers = signed_delivery(chatwoot, conv, "olá")
                out.append(await post_delivery(session, proc.webhook_url, delivery, body, headers, ledger))
            return out

        assert await send(3) == [200] * 3
        await wait_until(lambda: open_jobs(proc) == 0, what="warm-up answered")
        _set_reachable(name, False)
        try:
            during = await send(5)
            assert set(during) == {503}, during  # refused cleanly: never a 2xx without a commit
            status, doc = await health(proc)
            assert status == 503 and doc["checks"]["database"]["status"] == "down", doc
            assert PASSWORD not in str(doc)
        finally:
            _set_reachable(name, True)
        # Back: no restart, no operator.
        await wait_until(lambda: send(1), until=lambda codes: codes == [200], timeout=30,
                         what="intake accepts again")
        assert ledger.statuses[list(ledger.statuses)[-1]] == 200
        # Each pool connection the outage cut fails once on its next use, then reconnects: /health
        # (a probe on whichever pool thread is free) is 200 once those have been used.
        await wait_until(lambda: health(proc), until=lambda answer: answer[0] == 200, timeout=30,
                         what="/health ok again")
        assert await send(3) == [200] * 3
    stored = stored_delivery_ids(proc)
    assert ledger.ok() <= stored
    assert not {d for d, s in ledger.statuses.items() if s == 503} & stored
    await wait_until(lambda: open_jobs(proc) == 0, timeout=30, what="accepted work answered")
    assert len(jobs(proc)) == len(ledger.ok())
    for job in jobs(proc):
        assert job["state"] == "done" and len(chatwoot.replies(job["conversation_id"])) == 1
    log = "\n".join(proc.output) + "".join(p.read_text() for p in (proc.log_dir).glob("*.log*"))
    assert PASSWORD not in log


async def test_get_config_masks_the_database_url(process_factory, tmp_path: Path) -> None:
    url = backends.state_location(tmp_path / "pg", backends.POSTGRES)
    proc = await process_factory({"state": {"database_url": url}})
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{proc.url}/config", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as resp:
            text = await resp.text()
    assert resp.status == 200
    assert PASSWORD not in text and url not in text
    assert '"database_url":"****' in text.replace(" ", "")
