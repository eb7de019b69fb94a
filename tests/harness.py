"""Test harness: the real sidecar next to the fake servers, in-process or as a process.

Two ways to run the same sidecar, with the same surface (``url``, ``config_path``, ``query``,
``outcome``, ``output``, ``wait_for_output``, ``stop``/``start``):

- :class:`InProcessSidecar` (the default, fixtures ``sidecar`` and ``sidecar_factory``): a
  :class:`~sidecar.runtime.Runtime` the test owns, opened and started in the test's own event
  loop, and the app built on it by ``create_app(config, runtime=...)``. The test's own requests
  go through sanic-testing's ASGI client (``sidecar.client``); the same app is also served on a
  loopback port, because the fakes reach the sidecar the way Chatwoot and MCP-Crew do: over real
  HTTP (webhooks, echoes, async crew callbacks to ``server.public_url``). Wire-level behaviour
  (413 while reading a body, a trickled body, oversized headers) is tested on that port too.
- :class:`SidecarProcess` (fixtures ``process`` and ``process_factory``): ``python -m sidecar``
  as a subprocess, for what needs a process boundary: kill -9, SIGTERM, exit statuses.

Waiting is on conditions (``tests.waiting.wait_until``), never a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json as jsonlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from sanic import Sanic

from sidecar.config import deep_merge, load_config, secret_values
from state import Database, Tx, open_database
from tests import backends
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parent.parent
SECRET = "whsec-test-0123456789abcdef"
ADMIN_TOKEN = "admin-test-token-0123456789"
ENV_PREFIXES = ("SIDECAR_", "CHATWOOT_", "MCP_CREW_")
"""Environment variables that override config.yaml: a test's sidecar never inherits them."""

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


def sidecar_config(workdir: Path, *, chatwoot_url: str, crew_url: str, chatwoot_token: str, crew_key: str,
                   overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config.yaml of a test's sidecar (the one place it is built)."""
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


class SidecarClient:
    """HTTP requests to one sidecar that keep every answer (for the secret checks).

    In-process, through sanic-testing's ASGI client (no socket); ``wire=True`` sends the request
    over the loopback port instead, for what only a real connection shows (a 413 while reading).
    """

    def __init__(self, sidecar: SidecarBase) -> None:
        self._sidecar = sidecar
        self.bodies: list[str] = []

    async def request(self, method: str, path: str, *, json: Any = None, data: bytes | None = None,
                      headers: dict[str, str] | None = None, wire: bool = False) -> tuple[int, Any, str]:
        """(status, parsed JSON or None, raw text)."""
        asgi = self._sidecar.asgi_app if not wire else None
        if asgi is not None:
            kwargs: dict[str, Any] = {"headers": headers or {}}
            if json is not None:
                kwargs["json"] = json
            if data is not None:
                kwargs["content"] = data
            _, resp = await asgi.asgi_client.request(method.lower(), path, **kwargs)
            status, raw, head = resp.status, resp.text, resp.headers.items()
        else:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session, \
                    session.request(method, self._sidecar.url + path, json=json, data=data,
                                    headers=headers, allow_redirects=False) as wire_resp:
                status, raw, head = wire_resp.status, await wire_resp.text(), wire_resp.headers.items()
        shown = "\n".join(f"{k}: {v}" for k, v in head)
        self.bodies.append(f"{method} {path} -> {status}\n{shown}\n\n{raw}")
        try:
            parsed = jsonlib.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return status, parsed, raw

    async def get(self, path: str, **kwargs: Any) -> tuple[int, Any, str]:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> tuple[int, Any, str]:
        return await self.request("POST", path, **kwargs)


class SidecarBase:
    """What both kinds of sidecar share: their files, their state and their log lines."""

    def __init__(self, workdir: Path, config: dict[str, Any], env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.config = config
        self.port: int = config["server"]["port"]
        self.config_path = workdir / "config.yaml"
        self.db_path = Path(config["state"]["path"])
        self.location = config["state"].get("database_url") or str(self.db_path)
        """The state: the SQLite path, or the PostgreSQL URL (tests.backends)."""
        self.log_dir = Path(config["logging"]["dir"])
        self.env = env or {}
        self.output: list[str] = []
        """Every log line so far (a process's stderr; in-process, the connector's log records)."""
        self.client = SidecarClient(self)

    asgi_app: Sanic | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/webhook/chatwoot"

    def write_config(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False), encoding="utf-8")

    async def wait_for_output(self, needle: str, timeout: float = 10.0) -> str:
        """The first log line containing ``needle``, once it is written."""
        def seek() -> str | None:
            return next((line for line in self.output if needle in line), None)

        return await wait_until(seek, timeout=timeout, what=f"a log line with {needle!r}")

    async def outcome(self, delivery_id: str, timeout: float = 10.0) -> tuple[str, str]:
        """A delivery's final (outcome, reason): the webhook's answer comes from the payload
        alone; the journal row gets its outcome once the applier has applied it."""
        def applied() -> Any:
            row = self.query(lambda tx: tx.journal.get(delivery_id))
            return row if row is not None and row.outcome != "pending" else None

        row = await wait_until(applied, timeout=timeout, what=f"delivery {delivery_id} applied")
        return row.outcome, row.reason

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
        """A read of the sidecar's state (a read-only connection, closed afterwards, like the console)."""
        db = self.store()
        try:
            return db.read(fn)
        finally:
            db.close()


class SidecarProcess(SidecarBase):
    """``python -m sidecar`` with a generated config.yaml in a temporary folder."""

    def __init__(self, workdir: Path, config: dict[str, Any], env: dict[str, str] | None = None) -> None:
        super().__init__(workdir, config, env)
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 60.0) -> SidecarProcess:
        """Starts the process and waits for its ``sidecar.ready`` line (in the multi-process mode
        the parent says it once every child is ready: several interpreters importing the whole
        stack, which on a loaded 2-core machine can take well over 20 s)."""
        self.write_config()
        env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIXES)}
        env.update(self.env)
        env["PYTHONUNBUFFERED"] = "1"
        seen = len(self.output)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sidecar", "--config", str(self.config_path),
            cwd=str(self.workdir), env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.create_task(self._read_output(self.proc))
        proc = self.proc

        def ready() -> bool:
            if proc.returncode is not None:
                raise AssertionError("sidecar exited before it was ready:\n" + "\n".join(self.output[-40:]))
            return any("sidecar.ready" in line for line in self.output[seen:])

        await wait_until(ready, timeout=timeout, what="the sidecar.ready line")
        return self

    async def _read_output(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            self.output.append(raw.decode("utf-8", "replace").rstrip("\n"))

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


_APP_NAMES = itertools.count(1)
# Sanic's own test mode (what sanic-testing sets): several apps in one process may start, each
# rewriting ("touching up") Sanic's request classes from the originals kept aside.
Sanic.test_mode = True


class _LogLines(logging.Handler):
    """Keeps the connector's formatted log lines, as a process's stderr would show them."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self._lines = lines
        self._connector = True  # live logging changes (format, level) apply to it too

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._lines.append(self.format(record))
        except Exception:  # noqa: BLE001 - a log line must never fail the sidecar
            self.handleError(record)


class InProcessSidecar(SidecarBase):
    """The sidecar in the test's event loop: its Runtime owned by the test (see the module docs).

    Logging is process-wide: while it runs, the connector's records go to this sidecar's log
    file and ``output`` (with two at once, to the one started last).
    """

    def __init__(self, workdir: Path, config: dict[str, Any], env: dict[str, str] | None = None) -> None:
        super().__init__(workdir, config, env)
        self.runtime: Any = None
        self.app: Sanic | None = None
        self.asgi_app: Sanic | None = None
        self._server: Any = None
        self._names: list[str] = []

    async def start(self) -> InProcessSidecar:
        """Loads config.yaml as ``python -m sidecar`` would, opens and starts a Runtime, serves."""
        from sidecar.app import create_app
        from sidecar.ops.logs import setup_logging
        from sidecar.runtime import Runtime

        self.write_config()
        env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIXES)} | self.env
        config = load_config(str(self.config_path), env)
        lg = config.logging
        setup_logging(lg.dir, level=lg.level, as_json=lg.json, max_bytes=lg.max_bytes, backup_count=lg.backup_count,
                      secrets=secret_values(config), to_stderr=False)
        capture = _LogLines(self.output)
        root = logging.getLogger()
        capture.setFormatter(next(h for h in root.handlers if getattr(h, "_connector", False)).formatter)
        root.addHandler(capture)

        runtime = Runtime(config, config_path=str(self.config_path))
        await runtime.open()
        await runtime.start()
        self.runtime = runtime
        serial = next(_APP_NAMES)
        self.app = create_app(config, runtime=runtime, name=f"sidecar-{serial}")
        self.asgi_app = create_app(config, runtime=runtime, name=f"sidecar-{serial}-asgi")
        self._names += [self.app.name, self.asgi_app.name]
        self.app.config.MOTD = False
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._server = await self.app.create_server(sock=listener, access_log=False, noisy_exceptions=False)
        await self._server.startup()
        await self._server.start_serving()
        return self

    async def stop(self) -> None:
        """Closes the listener, lets the runtime finish (bounded by the shutdown grace), closes."""
        from sidecar.ops.logs import REDACTOR, stop_logging

        server, runtime = self._server, self.runtime
        self._server, self.runtime = None, None
        if server is not None:
            await server.close()
            for connection in list(server.connections):
                connection.close_if_idle()
        if runtime is not None:
            await runtime.stop(runtime.config.current.server.shutdown_grace_seconds)
        if server is not None:
            for connection in list(server.connections):
                connection.close()
        if runtime is not None:
            await runtime.close()
        for name in self._names:
            Sanic._app_registry.pop(name, None)
        self._names.clear()
        stop_logging()
        REDACTOR.set_secrets([])
