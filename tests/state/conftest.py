"""Fixtures for the state tests: a fresh database in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from state import Database, open_database


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = open_database(str(tmp_path / "db" / "c.db"), migrate=True)
    yield database
    database.close()
