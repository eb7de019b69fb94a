"""Provides Http11: a small keep-alive HTTP/1.1 client for the two calls every message makes.

Every answered message costs one crew request and one Chatwoot request; with aiohttp's client
those two calls were a third of the sidecar's CPU per message (request building, cookie and
redirect machinery, timers, payload registries). This client does only what those calls need:
a pooled keep-alive connection per host, one request written in one go, the answer parsed by
httptools (the C parser Sanic already uses), and errors classified the way the callers need them:

- :class:`Unreachable`: no connection could be made: the request certainly never left.
- :class:`Disconnected`: the connection failed after the request was (maybe) sent: the peer may
  have acted on it (a Chatwoot message may exist).
- ``TimeoutError``: no complete answer in time (the caller's ``asyncio.timeout``).

It never follows redirects (a 3xx comes back as an answer), never reads proxy variables, and caps
an answer at ``MAX_BODY_BYTES``. Idle connections are dropped after ``IDLE_SECONDS``, well before
servers usually close theirs, so a reused connection is rarely found closed by the peer.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

MAX_BODY_BYTES = 8 * 1024 * 1024
IDLE_SECONDS = 4.0
_MAX_IDLE_PER_HOST = 256


class HttpError(Exception):
    """Base of this client's connection errors."""


class Unreachable(HttpError):
    """No connection: the request never left."""


class Disconnected(HttpError):
    """The connection broke after the request may have been sent."""


@dataclass(frozen=True, slots=True)
class Target:
    """A URL split once: where to connect and what to put in the request line."""

    scheme: str
    host: str
    port: int
    path: bytes
    host_header: bytes

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Unreachable(f"not an http(s) URL: {parts.scheme or '?'}://")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        default = (parts.scheme == "https" and port == 443) or (parts.scheme == "http" and port == 80)
        host = parts.hostname
        shown = f"[{host}]" if ":" in host else host
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(parts.scheme, host, port, path.encode("ascii", "strict"),
                   (shown if default else f"{shown}:{port}").encode("idna" if not host.isascii() else "ascii"))


@dataclass(slots=True)
class Response:
    status: int
    headers: dict[str, str]
    """Lower-case names; a repeated header keeps its last value."""
    body: bytes


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; answers one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[Response] | None = None
        self._sent = False
        self._status = 0
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._size = 0
        self._keep_alive = True

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(Disconnected("the server switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(Disconnected(f"malformed answer ({exc})"))

    def eof_received(self) -> bool | None:
        self.closed = True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            # An answer with neither Content-Length nor chunked encoding ends with the connection
            # (httptools has no feed_eof: complete it here with the body received so far).
            if self._status and "content-length" not in self._headers and "transfer-encoding" not in self._headers:
                self.on_message_complete()
            if self._waiter is not None and not self._waiter.done():
                self._fail(Disconnected(f"connection lost ({type(exc).__name__ if exc else 'closed by peer'})"))

    # -- httptools callbacks ---------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._status = self.parser.get_status_code()
        self._keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_BODY_BYTES:
            self._fail(Disconnected("answer too large"))
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        response = Response(self._status, self._headers, b"".join(self._body))
        if not self._keep_alive:
            self.close()
        waiter.set_result(response)

    # -- use ---------------------------------------------------------------------------------------
    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def exchange(self, request: bytes) -> Response:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._status, self._headers, self._body, self._size = 0, {}, [], 0
        self.transport.write(request)
        try:
            return await self._waiter
        except asyncio.CancelledError:
            self.close()  # an answer may still be on its way: this connection is unusable
            raise
        finally:
            self._waiter = None


class Http11:
    """Pooled keep-alive connections; ``await client.request("POST", target, headers, body)``."""

    def __init__(self, *, connect_timeout: float = 5.0, ssl_context: ssl.SSLContext | None = None) -> None:
        self.connect_timeout = connect_timeout
        self._ssl = ssl_context
        self._idle: dict[tuple[str, str, int], deque[_Connection]] = {}
        self._targets: dict[str, Target] = {}
        self._closed = False

    def target(self, url: str) -> Target:
        """The parsed URL (cached: the same few URLs are called over and over)."""
        target = self._targets.get(url)
        if target is None:
            target = Target.parse(url)
            if len(self._targets) < 1024:
                self._targets[url] = target
        return target

    async def _connect(self, target: Target) -> _Connection:
        loop = asyncio.get_running_loop()
        context = None
        if target.scheme == "https":
            context = self._ssl or ssl.create_default_context()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(
                    _Connection, target.host, target.port, ssl=context,
                    server_hostname=target.host if context else None)
        except TimeoutError as exc:
            raise Unreachable(f"connect timed out after {self.connect_timeout:g}s") from exc
        except OSError as exc:  # refused, unreachable, DNS, TLS handshake
            raise Unreachable(type(exc).__name__) from exc
        return conn

    def _pooled(self, target: Target) -> _Connection | None:
        idle = self._idle.get(target.key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if (conn.closed or now - conn.idle_since > IDLE_SECONDS or conn.transport is None
                    or conn.transport.is_closing()):
                conn.close()
                continue
            return conn
        return None

    def _give_back(self, target: Target, conn: _Connection) -> None:
        if conn.closed or self._closed:
            conn.close()
            return
        idle = self._idle.setdefault(target.key, deque())
        if len(idle) >= _MAX_IDLE_PER_HOST:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    async def request(self, method: str, target: Target, headers: dict[str, str], body: bytes = b"") -> Response:
        """One request; the caller bounds it with its own ``asyncio.timeout``."""
        lines = [f"{method} ".encode() + target.path + b" HTTP/1.1\r\nHost: " + target.host_header]
        for name, value in headers.items():
            lines.append(f"{name}: {value}".encode("latin-1"))
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(b"Content-Length: " + str(len(body)).encode())
        request = b"\r\n".join(lines) + b"\r\n\r\n" + body
        conn = self._pooled(target)
        if conn is None:
            conn = await self._connect(target)
        response = await conn.exchange(request)
        self._give_back(target, conn)
        return response

    async def close(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
        self._idle.clear()
