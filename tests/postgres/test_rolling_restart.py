"""A rolling restart loses no webhook: nginx (Debian's, as in docker-compose.yml's proxy) in front
of two sidecars on one PostgreSQL database; each sidecar is restarted in turn during a stream of
webhooks, and every delivery is answered 2xx and stored once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
from pathlib import Path

import aiohttp
import pytest

from simulators import FakeChatwoot
from tests import backends
from tests.harness import free_port
from tests.reliability.helpers import Ledger, post_delivery, signed_delivery
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parent.parent.parent
NGINX_CONF = """
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
{user}
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream sidecars {{
        server 127.0.0.1:{first} max_fails=1 fail_timeout=2s;
        server 127.0.0.1:{second} max_fails=1 fail_timeout=2s;
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
{proxy}
        }}
    }}
}}
"""


def _nginx() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if found is None:
        why = "nginx is not installed (apt-get install nginx-light; .ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    return found


def _proxy_settings() -> str:
    """The location block of the shipped deploy/nginx/sidecar.conf, so the test runs what ships."""
    conf = (REPO / "deploy" / "nginx" / "sidecar.conf").read_text(encoding="utf-8")
    block = conf[conf.index("location / {") + len("location / {"):]
    return block[:block.index("}")]


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_a_rolling_restart_behind_nginx_loses_no_webhook(
    process_factory, chatwoot: FakeChatwoot, tmp_path: Path
) -> None:
    nginx = _nginx()
    url = backends.state_location(tmp_path / "shared", backends.POSTGRES)
    replicas = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        replicas.append(await process_factory({"state": {"database_url": url}}, workdir=tmp_path / name))
    port = free_port()
    conf_dir = tmp_path / "nginx"
    conf_dir.mkdir()
    conf = conf_dir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=conf_dir, port=port, first=replicas[0].port, second=replicas[1].port,
                                      user="user root;" if os.geteuid() == 0 else "", proxy=_proxy_settings()))
    proxy = await asyncio.create_subprocess_exec(nginx, "-c", str(conf), "-p", str(conf_dir),
                                                 stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        await wait_until(lambda: _listening(port) or proxy.returncode is not None, what="nginx listening")
        assert proxy.returncode is None, "nginx did not start"
        chatwoot.webhook_url = f"http://127.0.0.1:{port}/webhook/chatwoot"
        ledger = Ledger()
        restarted = asyncio.Event()

        async def stream(session: aiohttp.ClientSession) -> None:
            sent = 0
            while not restarted.is_set() or sent < 60:
                conv = chatwoot.open_conversation("webwidget")
                delivery, body, headers = signed_delivery(chatwoot, conv, f"mensagem {sent}")
                await post_delivery(session, chatwoot.webhook_url, delivery, body, headers, ledger)
                sent += 1
                await asyncio.sleep(0.01)

        async def roll() -> None:
            for replica in replicas:
                await wait_until(lambda: len(ledger.statuses) >= 20, what="stream under way")
                before = len(ledger.statuses)
                await replica.stop()  # SIGTERM: graceful, like docker compose restart
                await wait_until(lambda b=before: len(ledger.statuses) >= b + 15, what="stream goes on without it")
                replica.output.clear()
                await replica.start()
            restarted.set()

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            senders = [asyncio.create_task(stream(session)) for _ in range(3)]
            await roll()
            await asyncio.gather(*senders)
        assert ledger.errors == {}, ledger.errors
        assert set(ledger.statuses.values()) == {200}, {s for s in ledger.statuses.values()}
        stored = replicas[0].query(lambda tx: tx.sql.all(
            "SELECT delivery_id, count(*) AS n FROM deliveries WHERE delivery_id IS NOT NULL GROUP BY delivery_id"))
        counts = {row["delivery_id"]: row["n"] for row in stored}  # (plus the echoes of our replies)
        assert {counts.get(delivery) for delivery in ledger.statuses} == {1}  # every one stored, once
        assert len(ledger.statuses) >= 150
    finally:
        if proxy.returncode is None:
            proxy.terminate()
            await proxy.wait()
