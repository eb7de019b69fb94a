"""Shared fixtures for the console tests: a seeded database and an app over it."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from console.app import ConsoleApp, make_console
from console.settings import ConsoleSettings
from tests import backends
from tests.console.seed import NOW, seed

ACTOR = "console:tester"


@pytest.fixture(autouse=True, scope="session")
def utc() -> Iterator[None]:
    """Clock times on screen must not depend on the machine's time zone (snapshots)."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    """The seeded state: a SQLite file, or a PostgreSQL database's URL (--backend)."""
    path = str(tmp_path / "connector.db") if backends.BACKEND == backends.SQLITE else backends.state_location(tmp_path)
    seed(path)
    return path


def build_app(path: str, *, fixed_clock: bool = True) -> ConsoleApp:
    clock = (lambda: NOW) if fixed_clock else time.time
    return make_console(ConsoleSettings(db_path=path, refresh_seconds=1.0), clock=clock, actor=ACTOR)


@pytest.fixture
def app(db_path: str) -> ConsoleApp:
    return build_app(db_path)
