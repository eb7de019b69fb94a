"""The asynchronous state service: writes that arrive together share one commit, a failing unit
fails alone, a group is durable when any of its writes asks for it, and every caller is answered
only once its write is committed. Observed from a second connection, as the console sees it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from state import StateService, StorageUnavailable, Tx, open_service
from tests.waiting import wait_until


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[StateService]:
    svc = open_service(str(tmp_path / "db" / "c.db"))
    try:
        yield svc
    finally:
        svc.close()


def _committed(path: str) -> list[str]:
    """What another connection sees: the committed deliveries, by id."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [r[0] for r in conn.execute("SELECT delivery_id FROM deliveries ORDER BY id")]
    finally:
        conn.close()


def _insert(delivery_id: str, *, seen: list[list[str]] | None = None, path: str = "") -> Callable[[Tx], bool]:
    """A unit journaling one delivery; with ``seen``, it also records what another connection
    can see at that moment (nothing of its own group, if the group is one transaction)."""
    def unit(tx: Tx) -> bool:
        inserted = tx.journal.insert(delivery_id=delivery_id, dedup_key=None, event="e", received_at=time.time(),
                                     account_id=None, conversation_id=None, message_id=None, body="{}")
        if seen is not None:
            seen.append(_committed(path))
        return inserted
    return unit


class _Gate:
    """A unit that holds the writer thread until released, so the next writes queue up behind it."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, tx: Tx) -> None:
        self.entered.set()
        self.release.wait(10)


async def _queued_behind_a_gate(service: StateService, writes: list[tuple[Callable[[Tx], Any], bool]]
                                ) -> list[Any]:
    """Runs ``writes`` (unit, durable) while the writer is busy, so they arrive together; returns
    each caller's result or exception."""
    gate = _Gate()
    held = asyncio.create_task(service.write(gate))
    await wait_until(gate.entered.is_set, what="the writer thread held by the gate")
    callers = [asyncio.create_task(service.write(unit, durable=durable)) for unit, durable in writes]
    await asyncio.sleep(0)  # every caller has handed its unit to the writer thread
    gate.release.set()
    await held
    return await asyncio.gather(*callers, return_exceptions=True)


async def test_writes_that_arrive_together_share_one_commit(service: StateService) -> None:
    """Fifty writes queued while the writer is busy: inside their transaction none of them is
    visible to another connection (one group, one commit), and afterwards all fifty are."""
    seen: list[list[str]] = []
    ids = [f"d{i:02}" for i in range(50)]
    results = await _queued_behind_a_gate(service, [(_insert(d, seen=seen, path=service.path), False)
                                                    for d in ids])
    assert results == [True] * 50
    assert seen == [[]] * 50  # each unit ran before anything of the group was committed
    assert _committed(service.path) == ids


async def test_a_failing_unit_fails_alone(service: StateService) -> None:
    def half_then_boom(tx: Tx) -> None:
        _insert("half")(tx)
        raise ValueError("a bug in one unit")

    results = await _queued_behind_a_gate(service, [(_insert("a"), False), (half_then_boom, False),
                                                    (_insert("b"), False), (_insert("a"), False)])
    assert results[0] is True and results[2] is True
    assert isinstance(results[1], ValueError) and str(results[1]) == "a bug in one unit"
    assert results[3] is False  # the same delivery again: a duplicate, not an error
    assert _committed(service.path) == ["a", "b"]  # the failing unit's half-write was undone alone


async def test_a_group_is_durable_when_any_of_its_writes_asks(service: StateService) -> None:
    """The commit's synchronous setting, as each unit sees it inside the group's transaction."""
    def synchronous(tx: Tx) -> int:
        return int(tx.sql.scalar("PRAGMA synchronous"))

    relaxed = await _queued_behind_a_gate(service, [(synchronous, False), (synchronous, False)])
    mixed = await _queued_behind_a_gate(service, [(synchronous, False), (synchronous, True)])
    assert relaxed == [1, 1]  # NORMAL
    assert mixed == [2, 2]  # FULL for the whole group


async def test_a_caller_is_answered_only_after_its_commit(service: StateService) -> None:
    for n in range(20):
        assert await service.write(_insert(f"w{n}"))
        assert f"w{n}" in _committed(service.path)  # visible to another connection as soon as answered


async def test_storage_trouble_fails_every_write_of_the_group(service: StateService) -> None:
    """Another connection holds the write lock past the busy timeout: every queued write gets
    StorageUnavailable, nothing is half-written, and the next write succeeds once it is free."""
    blocker = sqlite3.connect(service.path, timeout=10, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        results = await asyncio.gather(*(service.write(_insert(f"x{i}")) for i in range(3)),
                                       return_exceptions=True)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert all(isinstance(r, StorageUnavailable) for r in results), results
    assert _committed(service.path) == []
    assert await service.write(_insert("after"))
    assert _committed(service.path) == ["after"]


async def test_reads_see_committed_data_and_never_wait_for_the_writer(service: StateService) -> None:
    gate = _Gate()
    held = asyncio.create_task(service.write(gate))
    await wait_until(gate.entered.is_set, what="the writer thread held by the gate")
    try:
        counts = await asyncio.wait_for(service.read(lambda tx: tx.journal.counts()), 5)
    finally:
        gate.release.set()
        await held
    assert counts == {}
