"""Fixtures for the state tests: a fresh database of each back-end (SQLite file, PostgreSQL database)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from state import Database, open_database
from tests import backends


@pytest.fixture(params=[backends.SQLITE, backends.POSTGRES])
def backend(request: pytest.FixtureRequest) -> str:
    """Every state test runs on both back-ends, whatever --backend says."""
    return request.param


@pytest.fixture
def location(tmp_path: Path, backend: str) -> str:
    if backend == backends.SQLITE:
        return str(tmp_path / "db" / "c.db")
    return backends.state_location(tmp_path, backends.POSTGRES)


@pytest.fixture
def db(location: str) -> Iterator[Database]:
    database = open_database(location, migrate=True)
    yield database
    database.close()
