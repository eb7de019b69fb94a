"""state imports neither sanic, textual nor aiohttp; sidecar and console never import each other."""

from __future__ import annotations

import subprocess
import sys


def _loaded_after(import_line: str) -> set[str]:
    code = f"import sys; {import_line}; print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_state_stays_free_of_web_and_ui_frameworks() -> None:
    loaded = _loaded_after("import state")
    assert not loaded & {"sanic", "textual", "aiohttp", "sidecar", "console"}


def test_sidecar_does_not_load_the_console() -> None:
    loaded = _loaded_after("import sidecar.app")
    assert "console" not in loaded and "textual" not in loaded


def test_the_shared_config_package_stands_alone() -> None:
    """The console, the demo and the sidecar all import it: it may import none of them."""
    loaded = _loaded_after("import connector_config")
    assert not loaded & {"sanic", "textual", "aiohttp", "sidecar", "console", "state"}


def test_the_postgresql_driver_loads_only_when_a_postgresql_url_is_opened() -> None:
    """A sidecar or console on SQLite never pays for importing psycopg (every process start)."""
    assert "psycopg" not in _loaded_after("import state, sidecar.app, console.app")
    assert "psycopg" in _loaded_after("from state import PostgresDatabase")
