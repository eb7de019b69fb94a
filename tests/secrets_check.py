"""Secret-leak checks for tests: an HTTP client that keeps every answer, and a grep for secrets.

Usage::

    async with RecordingClient() as http:
        status, body = await http.get(f"{proc.url}/health")
        ...
    assert_no_secrets(proc, http.bodies)

``assert_no_secrets`` loads the sidecar's config the way the sidecar does (config.yaml plus the
process's environment overrides), takes every value of ``secret_values(config)`` and searches
the log directory (rotated files included), the process's captured output and the given
response bodies. Any hit fails the test, naming where it was found but not the secret.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiohttp

from sidecar.config import load_config, secret_values
from tests.harness import SidecarProcess


class RecordingClient:
    """aiohttp client that records the raw body of every response it receives."""

    def __init__(self) -> None:
        self.bodies: list[str] = []
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> RecordingClient:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(self, method: str, url: str, **kwargs: Any) -> tuple[int, Any, str]:
        """(status, parsed JSON or None, raw text)."""
        assert self._session is not None, "use `async with RecordingClient()`"
        async with self._session.request(method, url, allow_redirects=False, **kwargs) as resp:
            raw = await resp.text()
            headers = "\n".join(f"{k}: {v}" for k, v in resp.headers.items())
            self.bodies.append(f"{method} {url} -> {resp.status}\n{headers}\n\n{raw}")
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = None
            return resp.status, parsed, raw

    async def get(self, url: str, **kwargs: Any) -> tuple[int, Any, str]:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> tuple[int, Any, str]:
        return await self.request("POST", url, **kwargs)


def configured_secrets(proc: SidecarProcess) -> list[str]:
    """Every secret the sidecar process runs with (its config file plus its env overrides)."""
    return secret_values(load_config(str(proc.config_path), proc.env))


def log_texts(log_dir: Path) -> dict[str, str]:
    """Every file in the log directory (current and rotated), by name."""
    if not log_dir.exists():
        return {}
    return {p.name: p.read_text(encoding="utf-8", errors="replace") for p in sorted(log_dir.iterdir()) if p.is_file()}


def find_secrets(secrets: Iterable[str], texts: dict[str, str]) -> list[str]:
    """``"<where>: secret #<n> (len <k>)"`` for every secret found; never the secret itself."""
    hits = []
    for index, secret in enumerate(secrets):
        for where, text in texts.items():
            if secret and secret in text:
                hits.append(f"{where}: secret #{index} (len {len(secret)})")
    return hits


def assert_no_secrets(proc: SidecarProcess, responses: Iterable[str] = (),
                      extra_secrets: Iterable[str] = ()) -> int:
    """Fails if any configured secret appears in the logs, the output or the responses.

    Returns how many texts were searched (so a test can check it searched something).
    """
    secrets = [*configured_secrets(proc), *extra_secrets]
    assert secrets, "no secrets configured: the check would prove nothing"
    texts = {f"log {name}": text for name, text in log_texts(proc.log_dir).items()}
    texts["process output"] = "\n".join(proc.output)
    texts.update({f"response {i}": body for i, body in enumerate(responses)})
    hits = find_secrets(secrets, texts)
    assert not hits, "secrets leaked:\n" + "\n".join(hits)
    return len(texts)


async def poll_until(fetch: Any, predicate: Any, *, timeout: float = 10.0, what: str = "condition") -> Any:
    """Calls ``await fetch()`` until ``predicate(result)`` holds; fails after ``timeout`` seconds.

    For state the sidecar changes in the background (probes, the file watcher), where there is
    no event to wait on from outside the process: polling with a deadline, never a fixed sleep.
    """
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await fetch()
        if predicate(last):
            return last
        await asyncio.sleep(0.05)  # poll interval, not a wait for the outcome
    raise AssertionError(f"{what}: still false after {timeout}s; last value: {str(last)[:2000]}")
