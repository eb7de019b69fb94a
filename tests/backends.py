"""Which state back-end the tests run on, and a fresh PostgreSQL database per test.

The one switch: ``--backend=postgres`` (pytest option) or ``CONNECTOR_TEST_BACKEND=postgres``;
SQLite otherwise. :func:`state_location` gives every sidecar config and every seeded database
of a test its state: a file under the test's folder, or a PostgreSQL database created for that
folder (dropped when the test ends).

The PostgreSQL server: ``CONNECTOR_TEST_PG_URL`` (a role allowed to create databases, e.g. what
``scripts/pg-cluster start`` printed; CI starts one that way), else a throw-away cluster this
session starts with ``scripts/pg-cluster`` and stops at its end. Without PostgreSQL binaries the
PostgreSQL tests fail with how to install them (CI) or are skipped with that reason (elsewhere).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

REPO = Path(__file__).resolve().parent.parent
SQLITE, POSTGRES = "sqlite", "postgres"
BACKEND = os.environ.get("CONNECTOR_TEST_BACKEND", SQLITE)
"""The back-end of the sidecars and seeded databases (set from --backend by tests/conftest.py)."""

_lock = threading.Lock()
_server: str | None = None
_cluster_dir: str | None = None
_created: list[str] = []


def set_backend(name: str) -> None:
    global BACKEND
    if name not in (SQLITE, POSTGRES):
        raise pytest.UsageError(f"--backend must be {SQLITE} or {POSTGRES}")
    BACKEND = name


def server_url() -> str:
    """The PostgreSQL server's admin URL (its ``postgres`` database); started on first use."""
    global _server, _cluster_dir
    with _lock:
        if _server is not None:
            return _server
        given = os.environ.get("CONNECTOR_TEST_PG_URL", "").strip()
        if given:
            _server = given
            return _server
        script = REPO / "scripts" / "pg-cluster"
        if not any(Path(p).is_dir() for p in ("/usr/lib/postgresql",)) and not os.environ.get("PG_BIN") \
                and shutil.which("pg_ctl") is None:
            why = "PostgreSQL is not installed (apt-get install postgresql, or set CONNECTOR_TEST_PG_URL)"
            if os.environ.get("CI"):
                pytest.fail(why, pytrace=False)
            pytest.skip(why)
        # Directly under the temp folder: the server's user must be able to reach it.
        _cluster_dir = tempfile.mkdtemp(prefix="connector-pg-")
        done = subprocess.run([str(script), "start", _cluster_dir], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            pytest.fail(f"could not start PostgreSQL: {done.stderr.strip()}", pytrace=False)
        _server = done.stdout.strip().splitlines()[-1]
        atexit.register(_stop_cluster)
        return _server


def _stop_cluster() -> None:
    if _cluster_dir is not None:
        subprocess.run([str(REPO / "scripts" / "pg-cluster"), "stop", _cluster_dir], capture_output=True,
                       timeout=60, check=False)
        shutil.rmtree(_cluster_dir, ignore_errors=True)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def create_database(key: str) -> str:
    """A fresh, empty database for ``key`` (a test's folder); its URL. Idempotent per key."""
    name = "t_" + hashlib.sha1(key.encode()).hexdigest()[:20]
    url = with_database(server_url(), name)
    if name in _created:
        return url
    with psycopg.connect(server_url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    _created.append(name)
    return url


def drop_created() -> None:
    """Drops every database created since the last call (the end of a test)."""
    if not _created:
        return
    names, _created[:] = list(_created), []
    with psycopg.connect(server_url(), autocommit=True) as conn:
        for name in names:
            try:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except psycopg.errors.InsufficientPrivilege:
                # A session our role may not end (autovacuum's, on a server where the role lacks
                # pg_signal_backend; scripts/pg-cluster grants it): wait for it to leave.
                _wait_for_no_sessions(conn, name)
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _wait_for_no_sessions(conn: psycopg.Connection, name: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname=%s AND pid<>pg_backend_pid()",
                       (name,)).fetchone()[0]:  # type: ignore[index]
        if time.monotonic() > deadline:
            return  # the DROP says why
        conn.execute("SELECT pg_sleep(0.05)")


def state_location(folder: Path, backend: str | None = None) -> str:
    """Where a sidecar (or a seeded database) in ``folder`` keeps its state on the back-end."""
    if (backend or BACKEND) == POSTGRES:
        return create_database(str(folder.resolve()))
    return str(folder / "data" / "connector.db")


def state_config(folder: Path, backend: str | None = None) -> dict[str, str]:
    """The ``state:`` section of a sidecar's config for ``folder``."""
    location = state_location(folder, backend)
    path = str(folder / "data" / "connector.db")
    return {"path": path, "database_url": location} if location != path else {"path": path}
