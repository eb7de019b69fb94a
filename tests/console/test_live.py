"""Live updates: rows written by another process appear without any key press."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path

from console.app import make_console
from console.context import ConsoleContext
from console.screens.base import LiveScreen
from console.settings import ConsoleSettings
from console.snapshots import ConversationsPage
from tests.console.conftest import build_app
from tests.console.helpers import LoadWatcher, settle

ROOT = Path(__file__).resolve().parents[2]
WRITER = """
import sys, time
from state import open_database
store = open_database(sys.argv[1])
with store.transaction() as tx:
    tx.conversations.upsert(1, 777, time.time(), channel="telegram", inbox_name="Bot TG",
                           contact_name="Zoe [live]", status="open", last_message_at=time.time(),
                           last_message_preview="hello from another process",
                           last_message_role="customer")
store.close()
"""


async def test_row_written_by_another_process_shows_without_operator_action(db_path: str) -> None:
    """A conversation committed by a separate writer process appears on its own.

    How fast (the 1 s promise: a 0.25 s change check plus the refresh) is measured by
    bench/console_refresh.py, not asserted here: a timed assertion only measures how busy the
    test machine is.
    """
    watcher = LoadWatcher()
    app = build_app(db_path, fixed_clock=False)
    async with app.run_test(size=(120, 36), message_hook=watcher) as pilot:
        await pilot.press("2")
        await settle(pilot)
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", WRITER, db_path, cwd=ROOT)
        assert await asyncio.wait_for(proc.wait(), 30) == 0

        def has_new_row(data: object) -> bool:
            return isinstance(data, ConversationsPage) and any(
                c.conversation_id == 777 for c in data.rows)

        await watcher.wait_for(has_new_row, timeout=15)
        await pilot.pause()
        assert app.screen.query_one("#conversations").get_row_index("1/777") == 0


async def test_cursor_stays_on_its_row_when_new_rows_arrive(db_path: str) -> None:
    """A live refresh that inserts a row above keeps the cursor on the same conversation."""
    from state import open_database

    watcher = LoadWatcher()
    app = build_app(db_path, fixed_clock=False)
    async with app.run_test(size=(120, 36), message_hook=watcher) as pilot:
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("down", "down")  # conversation 102
        table = app.screen.query_one("#conversations")
        assert table.current_key == "1/102"
        store = open_database(db_path)
        with store.transaction() as tx:
            tx.conversations.upsert(1, 888, time.time(), channel="sms", contact_name="New",
                                   last_message_at=time.time())
        store.close()
        await watcher.wait_for(lambda d: isinstance(d, ConversationsPage)
                               and d.rows[0].conversation_id == 888)
        await pilot.pause()
        assert table.current_key == "1/102"
        assert table.cursor_row == 3


class GatedScreen(LiveScreen):
    """A live view whose reads of chosen pages block until the test opens their gate."""

    def __init__(self, ctx: ConsoleContext) -> None:
        super().__init__(ctx)
        self.page = 0
        self.gates: dict[int, threading.Event] = {}
        self.shown: list[int] = []

    def query_args(self) -> int:
        return self.page

    def fetch(self, args: int) -> int:
        gate = self.gates.get(args)
        if gate is not None:
            gate.wait(10)
        return args

    def show(self, data: int) -> None:
        self.shown.append(data)


async def test_a_tick_never_cancels_the_read_an_operator_asked_for(db_path: str) -> None:
    """Two quick page changes, then a routine tick while the second read is still running:
    the second page must still show. (The end of the superseded first read used to let the
    tick start a plain read that cancelled it and found the database unchanged, so the old
    page stayed until the next full refresh, here an hour away.)"""
    app = make_console(ConsoleSettings(db_path=db_path, refresh_seconds=3600), actor="console:tester")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = GatedScreen(app.ctx)
        await app.push_screen(screen)
        await settle(pilot)
        # Page 0 once, or again when a routine tick saw another commit (on PostgreSQL the change
        # marker is server-wide: any database's write moves it).
        assert screen.shown and set(screen.shown) == {0}
        screen.gates = {1: threading.Event(), 2: threading.Event()}
        screen.page = 1
        screen.reload()
        await pilot.pause()  # its read is under way (waiting at the gate)
        screen.page = 2
        screen.reload()  # supersedes the read of page 1
        await pilot.pause()  # the superseded read's end is handled
        screen._tick()
        for gate in screen.gates.values():
            gate.set()
        await settle(pilot)
        assert screen.shown[-1] == 2
