"""POST /webhook/chatwoot: the signature matrix, bad input, and duplicates."""

from __future__ import annotations

import asyncio
import time
import uuid

from sidecar.inbound.intake import RateLimitedLog
from simulators import FakeChatwoot, FakeCrew, chatwoot_json, sign
from simulators.payloads import message_event
from state import Tx
from tests.conftest import SidecarFactory
from tests.harness import SECRET, InProcessSidecar


def _counts(proc: InProcessSidecar) -> tuple[int, int, int]:
    def read(tx: Tx) -> tuple[int, int, int]:
        return tuple(tx.sql.scalar(f"SELECT count(*) FROM {t}") for t in ("deliveries", "messages", "jobs"))
    return proc.query(read)


async def _post(sidecar: InProcessSidecar, body: bytes, headers: dict[str, str], *, wire: bool = False
                ) -> tuple[int, dict]:
    status, answer, _ = await sidecar.client.post("/webhook/chatwoot", data=body, headers=headers, wire=wire)
    return status, answer


def _signed(body: bytes, *, secret: str = SECRET, ts: int | None = None) -> dict[str, str]:
    stamp = int(time.time()) if ts is None else ts
    return {"Content-Type": "application/json", "X-Chatwoot-Delivery": str(uuid.uuid4()),
            "X-Chatwoot-Timestamp": str(stamp), "X-Chatwoot-Signature": sign(body, secret, stamp)}


async def test_signature_matrix_rejections_store_nothing(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    """Valid, tampered, wrong secret, missing headers, stale or future timestamps, old secret in rotation."""
    proc = await sidecar_factory({"chatwoot": {"webhook_secret": ["new-secret-abcdef123", SECRET]}})
    conv = chatwoot.open_conversation("whatsapp")
    body = chatwoot_json(message_event(conv, chatwoot.world.customer_message(conv, "oi")))
    now = int(time.time())

    tampered = bytearray(body)
    tampered[body.index(b"oi")] = ord("O")
    rejected = {
        "one byte changed": (bytes(tampered), _signed(body)),
        "wrong secret": (body, _signed(body, secret="not-the-secret-000")),
        "missing signature": (body, {k: v for k, v in _signed(body).items() if k != "X-Chatwoot-Signature"}),
        "missing timestamp": (body, {k: v for k, v in _signed(body).items() if k != "X-Chatwoot-Timestamp"}),
        "no headers at all": (body, {"Content-Type": "application/json"}),
        # Past the 300 s tolerance with room for a slow machine (the exact edge: test_units.py).
        "330 s old": (body, _signed(body, ts=now - 330)),
        "330 s in the future": (body, _signed(body, ts=now + 330)),
        "body-only HMAC": (body, {**_signed(body), "X-Chatwoot-Signature": "sha256=" + "0" * 64}),
    }
    for name, (payload, headers) in rejected.items():
        status, answer = await _post(proc, payload, headers)
        assert status == 401, name
        assert answer["status"] == "rejected" and SECRET not in str(answer), name
    assert _counts(proc) == (0, 0, 0)

    status, answer = await _post(proc, body, _signed(body, secret=SECRET))  # the old secret, still accepted
    assert (status, answer["status"]) == (200, "accepted")
    other = chatwoot_json(message_event(conv, chatwoot.world.customer_message(conv, "tudo bem?")))
    status, answer = await _post(proc, other, _signed(other, secret="new-secret-abcdef123"))
    assert (status, answer["status"]) == (200, "accepted")
    assert _counts(proc)[0] == 2


async def test_bad_bodies_get_clear_errors_and_change_nothing(sidecar: InProcessSidecar) -> None:
    for raw in (b"not json", b"[1, 2, 3]", b'"just a string"', b"\xff\xfe\x00garbage", b""):
        status, answer = await _post(sidecar, raw, _signed(raw))
        assert status == 400, raw
        assert answer["status"] == "rejected" and answer["error"]
    big = b'{"event":"message_created","content":"' + b"x" * (1024 * 1024) + b'"}'
    status, answer = await _post(sidecar, big, _signed(big), wire=True)  # refused while reading the body
    assert status == 413 and answer["status"] == "rejected"
    assert _counts(sidecar) == (0, 0, 0)


async def test_same_delivery_fifty_times_at_once_is_handled_once(
    sidecar: InProcessSidecar, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    """Chatwoot's duplicates (same delivery id, or same message under another id) are answered once."""
    conv = chatwoot.open_conversation("whatsapp")
    payload = message_event(conv, chatwoot.world.customer_message(conv, "Quero falar sobre meu pedido"))
    delivery = str(uuid.uuid4())
    results = await asyncio.gather(*(chatwoot.send_event(payload, delivery_id=delivery) for _ in range(50)))
    assert all(status == 200 for status, _ in results)
    assert sorted(body["status"] for _, body in results).count("accepted") == 1
    # The same message again under a new delivery id (two webhooks pointed at us).
    status, body = await chatwoot.send_event(payload)
    assert (status, body["status"]) == (200, "duplicate")
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)
    await _answered_again(chatwoot, conv)
    assert len(crew.crew_requests()) == 2 and len(chatwoot.replies(conv.display_id)) == 2


async def _answered_again(chatwoot: FakeChatwoot, conv) -> None:  # noqa: ANN001
    before = len(chatwoot.replies(conv.display_id))
    await chatwoot.customer_says(conv, "E agora?")
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == before + 1)


async def test_unsigned_deliveries_only_when_allowed(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    """allow_unsigned lets pre-4.12 Chatwoot through; a wrong signature is still refused."""
    await sidecar_factory({"chatwoot": {"allow_unsigned": True}})
    conv = chatwoot.open_conversation("whatsapp")
    payload = message_event(conv, chatwoot.world.customer_message(conv, "sem assinatura"))
    status, body = await chatwoot.send_event(payload, headers={"X-Chatwoot-Signature": None,
                                                               "X-Chatwoot-Timestamp": None})
    assert (status, body["status"]) == (200, "accepted")
    status, _ = await chatwoot.send_event(payload, secret="wrong-secret-123456")
    assert status == 401
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)


def test_rejection_log_lines_are_rate_limited_per_reason() -> None:
    limiter = RateLimitedLog(per_seconds=1.0)
    assert limiter.admit("bad signature", 100.0) == 0
    assert limiter.admit("bad signature", 100.2) is None
    assert limiter.admit("stale timestamp", 100.3) == 0  # another reason has its own allowance
    assert limiter.admit("bad signature", 100.5) is None
    assert limiter.admit("bad signature", 101.1) == 2  # the line after says how many were left out
