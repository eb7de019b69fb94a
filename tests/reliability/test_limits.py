"""R11: oversized and trickled bodies are refused, and nothing of them is stored."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from simulators import FakeChatwoot, FakeCrew
from tests.reliability.helpers import (
    Ledger,
    post_delivery,
    rows,
    signed_delivery,
)

pytestmark = pytest.mark.asyncio

LIMITS = {"server": {"max_body_bytes": 65536, "request_timeout_seconds": 1.0}}


async def _read_all(reader: asyncio.StreamReader, timeout: float) -> bytes:
    return await asyncio.wait_for(reader.read(), timeout)


async def test_oversized_body_is_refused_with_413_and_nothing_stored(sidecar_factory, chatwoot: FakeChatwoot,
                                                                      crew: FakeCrew) -> None:
    proc = await sidecar_factory(LIMITS)
    conv = chatwoot.open_conversation("whatsapp")
    _, body, headers = signed_delivery(chatwoot, conv, "x" * 70_000)
    ledger = Ledger()
    async with aiohttp.ClientSession() as session:
        assert await post_delivery(session, proc.webhook_url, "big", body, headers, ledger) == 413
        # Without a Content-Length (chunked), the limit holds while reading.
        async def chunks():  # noqa: ANN202
            for i in range(0, len(body), 8192):
                yield body[i:i + 8192]
        # The server may answer 413 and close before the client has written everything.
        try:
            async with session.post(proc.webhook_url, data=chunks(), headers=headers) as resp:
                assert resp.status == 413
                assert (await resp.json())["error"] == "request body too large"
        except aiohttp.ClientOSError:
            pass
        # A body just under the limit is still fine.
        small_id, small, small_headers = signed_delivery(chatwoot, conv, "y" * 15_000)
        assert await post_delivery(session, proc.webhook_url, small_id, small, small_headers, ledger) == 200
    assert [r["delivery_id"] for r in rows(proc, "SELECT delivery_id FROM deliveries")] == [small_id]
    assert (await proc.outcome(small_id))[0] == "accepted"
    assert len(rows(proc, "SELECT * FROM messages")) == 1


async def test_trickled_body_is_cut_off_at_the_request_timeout(sidecar_factory, chatwoot: FakeChatwoot,
                                                               crew: FakeCrew) -> None:
    """A client sending its body one byte at a time (slowloris) is cut off after
    server.request_timeout_seconds in total, not kept alive by every byte it sends."""
    proc = await sidecar_factory(LIMITS)
    conv = chatwoot.open_conversation("whatsapp")
    _, body, headers = signed_delivery(chatwoot, conv, "slow")
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    reader, writer = await asyncio.open_connection("127.0.0.1", proc.port)
    writer.write(f"POST /webhook/chatwoot HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{head}\r\n"
                 .encode())
    await writer.drain()
    started = time.monotonic()
    answer = b""
    for i in range(len(body)):
        if time.monotonic() - started > 10:
            break
        try:
            writer.write(body[i:i + 1])
            await writer.drain()
        except (ConnectionError, OSError):
            break
        # One byte per 0.2 s; the server's answer (or EOF) ends the trickle.
        try:
            chunk = await asyncio.wait_for(reader.read(65536), 0.2)
        except TimeoutError:
            continue
        answer += chunk
        break
    try:
        answer += await _read_all(reader, 5)
    except (ConnectionError, TimeoutError):
        pass
    closed_at = time.monotonic() - started
    writer.close()
    assert closed_at < 1.0 + 2.5, f"connection still open after {closed_at:.1f}s (answer {answer[:80]!r})"
    assert closed_at >= 0.9
    assert answer.startswith(b"HTTP/1.1 408") or answer == b"", answer[:120]
    assert rows(proc, "SELECT * FROM deliveries") == []
    # The server is still healthy for normal deliveries.
    ledger = Ledger()
    async with aiohttp.ClientSession() as session:
        _, ok_body, ok_headers = signed_delivery(chatwoot, conv, "fast")
        assert await post_delivery(session, proc.webhook_url, "fast", ok_body, ok_headers, ledger) == 200
    assert len(rows(proc, "SELECT * FROM deliveries")) == 1


async def test_an_oversized_header_is_431_and_an_oversized_body_still_413(sidecar_factory) -> None:
    """Sanic signals both with PayloadTooLarge; the answer names which part was too large."""
    proc = await sidecar_factory()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{proc.url}/health", headers={"X-Padding": "a" * 9 * 1024}) as resp:
            assert resp.status == 431
            assert await resp.json() == {"status": "rejected", "error": "request header fields too large"}
        async with session.get(f"{proc.url}/health", headers={"X-Padding": "a" * 7 * 1024}) as resp:
            assert resp.status == 200  # under the 8 KiB limit: served
        # 2 MB against the default 1 MiB server.max_body_bytes, with a Content-Length.
        async with session.post(proc.webhook_url, data=b"x" * 2 * 1024 * 1024,
                                headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 413
            assert await resp.json() == {"status": "rejected", "error": "request body too large"}
