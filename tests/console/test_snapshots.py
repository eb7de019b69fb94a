"""Snapshots of the main screens over the deterministic seeded database and a fixed clock.

Regenerate with ``pytest tests/console/test_snapshots.py --snapshot-update`` after an
intended change (textual is pinned exactly, so the SVGs only change when we change them).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot

from console.reader import Reader
from state import StorageFigures
from tests.console.conftest import build_app
from tests.console.helpers import settle

SIZE = (100, 30)


def keys_then_settle(*keys: str) -> Callable[[Pilot[None]], object]:
    async def run_before(pilot: Pilot[None]) -> None:
        await settle(pilot)
        for key in keys:
            await pilot.press(key)
            await settle(pilot)

    return run_before


@pytest.mark.sqlite_only  # SQLite itself; tests/postgres has the PostgreSQL side
@pytest.mark.parametrize("name, keys", [
    ("overview", ()),
    ("conversations", ("2",)),
    ("detail", ("2", "down", "down", "down", "enter", "home")),
    ("routing", ("3",)),
    ("dead_letters", ("4",)),
    ("config", ("5",)),
    ("analytics", ("6",)),
])
def test_screen_snapshot(snap_compare, db_path: str, name: str, keys: tuple[str, ...],  # noqa: ANN001
                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The screen looks as approved (layout, colours, literal customer text)."""
    assert Path(db_path).exists()
    # The file's size follows the schema (a new index moves it): the overview shows fixed figures.
    monkeypatch.setattr(Reader, "_storage", lambda self: StorageFigures(
        file_bytes=48 * 2**20, wal_bytes=2**20, page_size=4096, pages=12544, free_pages=768,
        auto_vacuum="incremental"))
    assert snap_compare(build_app(db_path), terminal_size=SIZE, run_before=keys_then_settle(*keys))
