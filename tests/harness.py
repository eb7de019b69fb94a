"""Test harness: runs the real sidecar as a subprocess next to the fake servers.

Tests talk real HTTP to it; readiness is the sidecar's own ``sidecar.ready`` log line
(read from its stderr), never a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from sidecar.config import deep_merge
from state import Database, Tx, open_database
from tests import backends

REPO = Path(__file__).resolve().parent.parent
SECRET = "whsec-test-0123456789abcdef"
ADMIN_TOKEN = "admin-test-token-0123456789"

# Short durations so retries, leases and debounce happen in test time, not minutes.
FAST = {
    "processing": {
        "debounce_seconds": 0.15,
        "debounce_max_seconds": 1.0,
        "retry_base_seconds": 0.05,
        "retry_max_seconds": 0.4,
        "lease_seconds": 2.0,
        "max_attempts": 4,
        "breaker_min_requests": 0,
    },
    "chatwoot": {"timeout_seconds": 2.0},
    # Tests stop many sidecars; a short grace keeps teardown quick (the SIGTERM test sets its own).
    "server": {"shutdown_grace_seconds": 5.0},
    "mcp_crew": {"timeout_seconds": 2.0, "decision_timeout_seconds": 0.5, "callback_timeout_seconds": 5.0},
    "health": {"probe_interval_seconds": 0.5},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SidecarProcess:
    """``python -m sidecar`` with a generated config.yaml in a temporary folder."""

    def __init__(self, workdir: Path, config: dict[str, Any], env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.port = config["server"]["port"]
        self.config = config
        self.config_path = workdir / "config.yaml"
        self.db_path = Path(config["state"]["path"])
        self.location = config["state"].get("database_url") or str(self.db_path)
        """The state: the SQLite path, or the PostgreSQL URL (tests.backends)."""
        self.log_dir = Path(config["logging"]["dir"])
        self.env = env or {}
        self.proc: asyncio.subprocess.Process | None = None
        self.output: list[str] = []
        self._reader: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._line_event = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False), encoding="utf-8")

    async def start(self, timeout: float = 60.0) -> SidecarProcess:
        """Starts the sidecar and waits for it to say it is ready (``timeout``: only how long before
        the test gives up; a busy two-core machine can take well over 20 s to start Python there)."""
        self.write_config()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SIDECAR_", "CHATWOOT_", "MCP_CREW_"))}
        env.update(self.env)
        env["PYTHONUNBUFFERED"] = "1"
        self._ready.clear()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sidecar", "--config", str(self.config_path),
            cwd=str(self.workdir), env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.create_task(self._read_output(self.proc))
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            raise RuntimeError("sidecar did not start:\n" + "\n".join(self.output[-40:])) from None
        return self

    async def _read_output(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.output.append(line)
            if "sidecar.ready" in line:
                self._ready.set()
            self._line_event.set()

    async def wait_for_output(self, needle: str, timeout: float = 10.0) -> str:
        async def seek() -> str:
            while True:
                for line in self.output:
                    if needle in line:
                        return line
                self._line_event.clear()
                await self._line_event.wait()

        return await asyncio.wait_for(seek(), timeout)

    async def outcome(self, delivery_id: str, timeout: float = 10.0) -> tuple[str, str]:
        """A delivery's final (outcome, reason): the webhook's answer comes from the payload
        alone, the applier decides after the commit and logs one line per delivery."""
        await self.wait_for_output(f"webhook.received delivery={delivery_id} ", timeout)
        delivery = self.query(lambda s: s.journal.get(delivery_id))
        assert delivery is not None, delivery_id
        return delivery.outcome, delivery.reason

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 40.0) -> int:
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc else 0
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)
        return code

    async def kill(self) -> int:
        return await self.stop(signal.SIGKILL)

    def store(self) -> Database:
        return open_database(self.location, readonly=True)

    def integrity_check(self) -> str:
        """"ok" when the state is sound: SQLite's own check, or on PostgreSQL (whose storage
        checks itself) the queue's invariants: one job in flight per conversation at most,
        leases only on jobs in flight."""
        if self.location == str(self.db_path):
            return self.query(lambda s: s.sql.scalar("PRAGMA integrity_check"))
        broken = self.query(lambda s: s.sql.scalar(
            "SELECT count(*) FROM (SELECT account_id, conversation_id FROM jobs WHERE state='in_flight' "
            "GROUP BY account_id, conversation_id HAVING count(*) > 1) AS doubled")
            + s.sql.scalar("SELECT count(*) FROM jobs WHERE lease_owner IS NOT NULL AND state<>'in_flight'"))
        return "ok" if broken == 0 else f"{broken} queue invariants broken"

    def query(self, fn: Callable[[Tx], Any]) -> Any:
        """A read of the sidecar's state (a read-only connection, closed afterwards)."""
        db = self.store()
        try:
            return db.read(fn)
        finally:
            db.close()


def sidecar_config(workdir: Path, *, chatwoot_url: str, crew_url: str, chatwoot_token: str, crew_key: str,
                   overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    base: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": free_port(), "admin_token": ADMIN_TOKEN},
        # SQLite under workdir, or a fresh PostgreSQL database for it (--backend, tests.backends).
        "state": backends.state_config(workdir),
        "logging": {"dir": str(workdir / "logs")},
        "chatwoot": {"api_url": chatwoot_url, "api_access_token": chatwoot_token, "webhook_secret": SECRET},
        "mcp_crew": {"api_url": crew_url, "api_key": crew_key},
        "routing": {
            "default_crew": "suporte",
            "rules": [
                {"channel": "whatsapp", "crew": "whatsapp_crew"},
                {"channel": "facebook", "crew": "facebook_crew"},
                {"channel": "instagram", "crew": "instagram_crew"},
                {"channel": "webwidget", "crew": "webwidget_crew"},
            ],
        },
    }
    config = deep_merge(base, FAST)
    config["server"]["public_url"] = f"http://127.0.0.1:{config['server']['port']}"
    return deep_merge(config, overrides or {})
