"""Logs: one line per event with ids and timings, rotation, JSON lines, no injection, no secrets."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.ops.logs import (
    LOG_FILE_NAME,
    MAX_FIELD_CHARS,
    REDACTOR,
    SafeFormatter,
    log_event,
    reconfigure,
)
from simulators import FakeChatwoot
from simulators.loopback import serve, shut_down
from tests.conftest import SidecarFactory
from tests.harness import InProcessSidecar
from tests.secrets_check import assert_no_secrets
from tests.waiting import wait_until

LINE_START = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
FORGED = "\r\n2026-01-01T00:00:00 ERROR forged=yes\u2028also\x85this\x1b[31m"
SECRETS = ["plain-secret-0123456789", 'quote"and\\backslash-secret', "line\nbreak-secret-xyz", "tab\tsecret-abcdef"]


# ---------------------------------------------------------------------------- in-process formatter


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("connector.test_logs")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    REDACTOR.set_secrets(SECRETS)
    try:
        yield logger, stream, handler
    finally:
        logger.removeHandler(handler)
        REDACTOR.set_secrets([])


@pytest.mark.parametrize("as_json", [False, True])
def test_control_characters_cannot_start_a_line(capture: Any, as_json: bool) -> None:
    logger, stream, handler = capture
    handler.setFormatter(SafeFormatter(as_json=as_json))
    log_event(logger, "crew.failed", error=f"bad answer{FORGED}", reason=FORGED, conversation="7/1")
    logger.warning("free text %s", FORGED)
    try:
        raise ValueError(f"boom{FORGED}")
    except ValueError:
        logger.exception("with traceback")
    lines = stream.getvalue().split("\n")[:-1]
    assert len(lines) == 3
    for line in lines:
        assert not any(c in line for c in "\r\x85\u2028\u2029\x1b"), line
        assert len(line.splitlines()) == 1
        if as_json:
            json.loads(line)
        else:
            assert LINE_START.match(line)


@pytest.mark.parametrize("as_json", [False, True])
def test_every_secret_is_redacted_in_every_spelling(capture: Any, as_json: bool) -> None:
    logger, stream, handler = capture
    handler.setFormatter(SafeFormatter(as_json=as_json))
    for secret in SECRETS:
        log_event(logger, "event", token=secret, nested={"key": secret}, text=f"before {secret} after")
        logger.info("message with %s inside", secret)
        try:
            raise RuntimeError(f"failed with {secret}")
        except RuntimeError:
            logger.exception("oops")
    out = stream.getvalue()
    for secret in SECRETS:
        spellings = {secret, json.dumps(secret)[1:-1], secret.replace("\n", "\\x0a").replace("\t", "\\x09")}
        for spelling in spellings:
            assert spelling not in out, (as_json, spelling)
    assert "****" in out


@settings(max_examples=300, deadline=None)
@given(text=st.text(), secret=st.text(min_size=4, max_size=40).filter(lambda s: s.strip() != ""))
def test_any_text_is_one_line_without_the_secret(text: str, secret: str) -> None:
    REDACTOR.set_secrets([secret])
    try:
        for as_json in (False, True):
            record = logging.LogRecord("connector", logging.INFO, __file__, 1, "%s", (text + secret,), None)
            record.fields = {"error": text + secret + text}
            line = SafeFormatter(as_json=as_json).format(record)
            assert "\n" not in line and "\r" not in line and "\u2028" not in line and "\x85" not in line
            assert secret not in line
    finally:
        REDACTOR.set_secrets([])


def test_reconfigure_switches_format_and_level_live(tmp_path: Path) -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler(io.StringIO())
    handler._connector = True  # type: ignore[attr-defined]
    handler.setFormatter(SafeFormatter(as_json=False))
    root.addHandler(handler)
    level = root.level
    try:
        reconfigure(level="ERROR", as_json=True, max_bytes=10, backup_count=1)
        assert root.level == logging.ERROR
        assert isinstance(handler.formatter, SafeFormatter) and handler.formatter.as_json
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


# ---------------------------------------------------------------------------- the real sidecar


class _EvilCrew:
    """A crew whose 4xx answer carries line breaks and a fake log line (crew text is untrusted)."""

    def __init__(self) -> None:
        self.url = ""
        self.calls = 0
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> _EvilCrew:
        async def handle(request: web.Request) -> web.Response:
            self.calls += 1
            return web.Response(status=422, text=f"rejected{FORGED}")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        self._runner, base = await serve(app)
        self.url = f"{base}/crew"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await shut_down((), None, self._runner)


def _log_lines(proc: InProcessSidecar) -> list[str]:
    return (proc.log_dir / LOG_FILE_NAME).read_text(encoding="utf-8").split("\n")[:-1]


async def _fail_one(chatwoot: FakeChatwoot) -> None:
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, f"oi{FORGED}")
    await chatwoot.wait_for(lambda: len(chatwoot.notes(conv.display_id)) == 1)  # the failure note


async def test_log_file_lines_carry_ids_crew_and_timings(sidecar: InProcessSidecar, chatwoot: FakeChatwoot) -> None:
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "olá", delivery_id="delivery-abc")
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)
    await sidecar.wait_for_output("job.done")
    lines = _log_lines(sidecar)
    [received] = [line for line in lines if "webhook.received" in line and "delivery=delivery-abc" in line]
    assert f"conversation=7/{conv.display_id}" in received and re.search(r" lag_ms=[\d.]+", received)
    # One line per answered job carries its route and timing (routing.decided is DEBUG for rules).
    [done] = [line for line in lines if "job.done" in line]
    assert "crew=whatsapp_crew" in done and "route=rules" in done and re.search(r" ms=[\d.]+", done)
    assert all(LINE_START.match(line) for line in lines)


async def test_untrusted_text_cannot_forge_log_lines(sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot) -> None:
    async with _EvilCrew() as evil:
        proc = await sidecar_factory({"crews": {"whatsapp_crew": {"backend": "http", "url": evil.url}}})
        await _fail_one(chatwoot)
        await proc.wait_for_output("crew.gave_up")
    lines = _log_lines(proc)
    assert any("crew.failed" in line and "rejected" in line for line in lines)
    for line in lines:
        assert LINE_START.match(line), line
        assert "\r" not in line and "\u2028" not in line and "\x85" not in line and "\x1b" not in line
    assert not any(line.startswith("2026-01-01T00:00:00") for line in lines)
    assert_no_secrets(proc)


async def test_json_lines(sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot) -> None:
    async with _EvilCrew() as evil:
        proc = await sidecar_factory({"logging": {"json": True},
                                      "crews": {"whatsapp_crew": {"backend": "http", "url": evil.url}}})
        await _fail_one(chatwoot)
        await proc.wait_for_output("crew.gave_up")
    docs = [json.loads(line) for line in _log_lines(proc)]
    failed = [d for d in docs if d["msg"] == "crew.failed"]
    assert failed and "forged=yes" in failed[0]["error"] and failed[0]["crew"] == "whatsapp_crew"
    assert all({"ts", "level", "msg"} <= set(d) for d in docs)


async def test_log_file_rotates_by_size(sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot) -> None:
    proc = await sidecar_factory({"logging": {"max_bytes": 2000, "backup_count": 2},
                                  "processing": {"workers_enabled": False}})
    for i in range(40):
        await chatwoot.customer_says(chatwoot.open_conversation("whatsapp"), f"mensagem {i}")
    # Acknowledged is not logged yet: the journal applier writes each delivery's line afterwards.
    await wait_until(lambda: sum("webhook.received" in line for line in proc.output) >= 40,
                     what="every delivery's log line written")
    names = sorted(p.name for p in proc.log_dir.iterdir())
    assert names == [LOG_FILE_NAME, f"{LOG_FILE_NAME}.1", f"{LOG_FILE_NAME}.2"]
    for path in proc.log_dir.iterdir():
        assert path.stat().st_size <= 2000


def test_one_field_never_makes_a_huge_line() -> None:
    record = logging.LogRecord("connector", logging.INFO, __file__, 1, "webhook.received", None, None)
    record.fields = {"reason": "x" * 300_000}
    for as_json in (False, True):
        line = SafeFormatter(as_json=as_json).format(record)
        assert len(line) < MAX_FIELD_CHARS + 200 and "(+298000 chars)" in line
