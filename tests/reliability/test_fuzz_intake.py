"""Bad input: random and mutated Chatwoot payloads, signed, against one running sidecar.

Every answer is 200 (ignored / accepted / duplicate) or 400, never a 5xx; the sidecar keeps
answering; and nothing half-recorded is left behind. The deliveries come over real HTTP, from
worker threads, to the sidecar served in the test's event loop.
"""

from __future__ import annotations

import asyncio
import copy
import http.client
import json
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulators import FakeChatwoot, FakeCrew, chatwoot_json
from simulators.payloads import conversation_event, message_event
from tests.harness import InProcessSidecar
from tests.reliability.helpers import rows, sign_raw

SETTINGS = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63), st.floats(allow_nan=False),
                      st.text(max_size=40), st.sampled_from(["", "incoming", "outgoing", "0", "-1", "null"]))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=20)
odd_value = st.one_of(
    json_value,
    st.just("x" * 300_000),  # huge string
    st.integers(2**64, 2**80),  # does not fit SQLite's INTEGER
    st.builds(lambda depth: json.loads("[" * depth + "]" * depth), st.integers(10, 200)),  # deep nesting
    st.builds(lambda: {"id": {"id": {"id": None}}}),
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            found.append((*prefix, key))
            found.extend(_paths(value, (*prefix, key)))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            found.append((*prefix, i))
            found.extend(_paths(value, (*prefix, i)))
    return found


def _mutate(doc: Any, path: tuple[Any, ...], op: str, value: Any) -> Any:
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    if op == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


def _post(port: int, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request("POST", "/webhook/chatwoot", body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


MAX_BODY = 1024 * 1024  # server.max_body_bytes (default)


def _check_answer(status: int, raw: bytes, size: int) -> None:
    # A mutation can stack several huge strings: past the body limit the answer is 413.
    assert status in ((413,) if size > MAX_BODY else (200, 400)), (status, raw[:300])
    if status == 200:
        assert json.loads(raw)["status"] in ("ignored", "accepted", "duplicate"), raw[:300]


async def test_fuzzed_deliveries_never_crash_nor_leave_half_records(
    sidecar_factory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    proc: InProcessSidecar = await sidecar_factory()
    convs = [chatwoot.open_conversation(ch) for ch in ("whatsapp", "facebook", "instagram", "webwidget")]
    seeds = []
    for conv in convs:
        seeds.append(message_event(conv, chatwoot.world.customer_message(conv, "Olá, tudo bem?", None)))
        seeds.append(conversation_event(conv, "conversation_updated"))
        seeds.append(conversation_event(conv, "conversation_created"))
    port = proc.port

    def mutated() -> None:
        @SETTINGS
        @given(data=st.data())
        def check(data: st.DataObject) -> None:
            doc = copy.deepcopy(data.draw(st.sampled_from(seeds)))
            for _ in range(data.draw(st.integers(1, 4))):
                paths = _paths(doc)
                if not paths:
                    break
                path = data.draw(st.sampled_from(paths))
                op = data.draw(st.sampled_from(["delete", "replace"]))
                doc = _mutate(doc, path, op, data.draw(odd_value) if op == "replace" else None)
            if data.draw(st.booleans()) and isinstance(doc, dict):
                doc["id"] = data.draw(st.integers(1, 10**6))  # fresh ids reach deeper than duplicates
            body = chatwoot_json(doc)
            _check_answer(*_post(port, body, sign_raw(body)), len(body))

        check()

    def random_bodies() -> None:
        @SETTINGS
        @given(
            kind=st.sampled_from(["json", "bytes", "invalid_utf8", "truncated", "deep"]),
            value=json_value, raw=st.binary(max_size=200),
            content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/json; charset=latin-1"]),
            depth=st.integers(500, 100_000),
        )
        def check(kind: str, value: Any, raw: bytes, content_type: str, depth: int) -> None:
            if kind == "json":
                body = json.dumps(value).encode()
            elif kind == "bytes":
                body = raw
            elif kind == "invalid_utf8":
                body = b'{"event":"message_created","content":"\xff\xfe\xc3\x28"}'
            elif kind == "truncated":
                body = chatwoot_json(seeds[0])[: max(1, len(raw))]
            else:
                body = b"[" * depth + b"]" * depth
            _check_answer(*_post(port, body, sign_raw(body, content_type=content_type)), len(body))

        check()

    def deep_inside() -> None:
        """Nesting close to and past json's recursion limit, inside an otherwise valid payload."""
        for depth in (900, 990, 5000):
            nested = "[" * depth + "]" * depth
            for field in ("content_attributes", "additional_attributes"):
                base = chatwoot_json(seeds[0]).decode()
                body = base.replace(f'"{field}":{{', f'"{field}":{{"deep":{nested},', 1).encode()
                _check_answer(*_post(port, body, sign_raw(body)), len(body))

    await asyncio.to_thread(deep_inside)
    await asyncio.to_thread(mutated)
    await asyncio.to_thread(random_bodies)

    # Still answering normally.
    conv = chatwoot.open_conversation("whatsapp")
    status, body = await chatwoot.customer_says(conv, "ainda funciona?", delivery_id=str(uuid.uuid4()))
    assert (status, body["status"]) == (200, "accepted")
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1, timeout=20)

    # No half records: every delivery kept its body, every job has its messages, the file is sound.
    assert rows(proc, "SELECT id FROM deliveries WHERE body IS NULL OR body=''") == []
    for job in rows(proc, "SELECT id, account_id, conversation_id, message_ids FROM jobs"):
        ids = json.loads(job["message_ids"])
        assert ids, job
        found = rows(proc, f"SELECT message_id FROM messages WHERE account_id=? AND conversation_id=? "
                           f"AND message_id IN ({','.join('?' * len(ids))})",
                     (job["account_id"], job["conversation_id"], *ids))
        assert len(found) == len(ids), (job, found)
    assert proc.integrity_check() == "ok"
    assert not [line for line in proc.output if "unhandled error" in line or "Traceback" in line]
