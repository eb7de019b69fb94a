"""Provides the bearer-token checks: the admin token for /config, the crew key for callbacks.

Tokens are compared in constant time over equal-length digests (the time says nothing about the
token, not even its length), and a client that keeps failing is refused for a while (429).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import deque

from sanic import Request

from sidecar.http.errors import Forbidden, TooManyRequests, Unauthorized
from sidecar.ops.logs import get_logger, log_event

log = get_logger()
FAILURE_WINDOW_SECONDS = 60.0
MAX_FAILURES = 20


class FailureLimiter:
    """Counts failed logins per client address in a sliding window (a brute-force brake)."""

    def __init__(self) -> None:
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str, now: float) -> deque[float]:
        seen = self._failures.setdefault(client, deque())
        while seen and seen[0] < now - FAILURE_WINDOW_SECONDS:
            seen.popleft()
        return seen

    def blocked(self, client: str) -> bool:
        return len(self._recent(client, time.monotonic())) >= MAX_FAILURES

    def failed(self, client: str) -> None:
        if len(self._failures) > 10_000:
            self._failures.clear()  # memory bound under a spray of addresses
        self._recent(client, time.monotonic()).append(time.monotonic())


_ADMIN_FAILURES = FailureLimiter()


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def bearer(request: Request) -> str:
    """The bearer token the request carries ("" when none)."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" else ""


def token_matches(given: str, expected: str) -> bool:
    """Constant time; an empty ``expected`` never matches (compared anyway)."""
    return hmac.compare_digest(_digest(given), _digest(expected)) and bool(expected)


def client_of(request: Request) -> str:
    return request.remote_addr or request.ip or "?"


def require_admin(request: Request, token: str) -> None:
    """Raises unless the request carries the admin token: 403 when none is configured (the
    endpoints are off), 429 for a client that keeps failing, 401 otherwise."""
    if not token:
        raise Forbidden("no admin token configured (server.admin_token)")
    client = client_of(request)
    if _ADMIN_FAILURES.blocked(client):
        raise TooManyRequests("too many failed attempts, try again later",
                              headers={"Retry-After": str(int(FAILURE_WINDOW_SECONDS))})
    if token_matches(bearer(request), token):
        return
    _ADMIN_FAILURES.failed(client)
    log_event(log, "admin.unauthorized", level=30, path=request.path, client=client)
    raise Unauthorized("missing or wrong bearer token", headers={"WWW-Authenticate": 'Bearer realm="config"'})


def require_crew_key(request: Request, key: str) -> None:
    """Raises 401 unless the request carries MCP-Crew's key (``mcp_crew.api_key``)."""
    if not token_matches(bearer(request), key):
        raise Unauthorized("missing or wrong bearer token")
