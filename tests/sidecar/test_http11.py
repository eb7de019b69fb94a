"""The lean HTTP/1.1 client against raw loopback servers: the answer shapes a peer may send."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from sidecar.outbound.http11 import Disconnected, Http11, Unreachable


async def _serve(answer: Callable[[bytes], bytes], *, close: bool,
                 connections: list[int] | None = None) -> tuple[asyncio.Server, str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if connections is not None:
            connections.append(1)
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            body = await reader.readexactly(length)
            writer.write(answer(body))
            await writer.drain()
            if close:
                writer.close()
                return

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/x"


@pytest.fixture
async def client() -> AsyncIterator[Http11]:
    http = Http11()
    yield http
    await http.close()


async def test_an_answer_delimited_by_the_connection_end_is_complete(client: Http11) -> None:
    server, url = await _serve(lambda body: b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body.upper(),
                               close=True)
    async with server:
        response = await client.request("POST", client.target(url), {}, b"hello")
    assert (response.status, response.body) == (200, b"HELLO")


async def test_keep_alive_answers_reuse_one_connection(client: Http11) -> None:
    connections: list[int] = []

    def answer(body: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    server, url = await _serve(answer, close=False, connections=connections)
    async with server:
        target = client.target(url)
        for n in range(3):
            response = await client.request("POST", target, {}, f"m{n}".encode())
            assert response.body == f"m{n}".encode()
    assert len(connections) == 1


async def test_a_connection_cut_mid_answer_is_a_disconnect(client: Http11) -> None:
    server, url = await _serve(lambda body: b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial", close=True)
    async with server:
        with pytest.raises(Disconnected):
            await client.request("POST", client.target(url), {}, b"x")


async def test_nobody_listening_is_unreachable(client: Http11) -> None:
    server, url = await _serve(lambda body: b"", close=True)
    server.close()
    await server.wait_closed()
    with pytest.raises(Unreachable):
        await client.request("POST", client.target(url), {}, b"x")
