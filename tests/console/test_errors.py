"""A clear one-line message (never a traceback) when the database cannot be used."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from textual.widgets import Static

from console.messages import DataLoaded
from console.reader import describe
from console.screens.overview import OverviewScreen
from console.screens.problem import ProblemScreen
from console.settings import SettingsError, load_settings
from tests.console.conftest import build_app
from tests.console.helpers import LoadWatcher, screen_text, wait_for_screen
from tests.console.seed import seed

ROOT = Path(__file__).resolve().parents[2]


def problem(app) -> str:  # noqa: ANN001
    assert isinstance(app.screen, ProblemScreen), type(app.screen).__name__
    return str(app.screen.query_one("#problem-message", Static).content)


async def shown_problem(pilot) -> str:  # noqa: ANN001
    """The database problem line, once the first read has failed and its screen is up."""
    return await wait_for_screen(pilot, lambda app: isinstance(app.screen, ProblemScreen) and problem(app),
                                 what="the database problem screen")


async def test_missing_database_then_it_appears(tmp_path: Path) -> None:
    """No file: one line saying so; once the sidecar creates it, the view comes back."""
    path = str(tmp_path / "connector.db")
    watcher = LoadWatcher()
    app = build_app(path)
    async with app.run_test(size=(80, 24), message_hook=watcher) as pilot:
        assert (await shown_problem(pilot)).startswith(f"No database at {path}.")
        assert "Traceback" not in screen_text(app)
        assert not Path(path).exists()  # the console never creates the file
        seed(path)
        await pilot.press("r")  # retry now rather than waiting for the timer
        await watcher.wait_for(lambda data: data is not None and hasattr(data, "components"))
        await wait_for_screen(pilot, lambda app: isinstance(app.screen, OverviewScreen), what="the overview back")


async def test_two_successful_checks_return_to_the_view_once(tmp_path: Path) -> None:
    """The retry key and the timer's check can both find the database readable (a superseded
    check's thread still reports): the second report must not pop the view underneath."""
    path = str(tmp_path / "connector.db")
    app = build_app(path)
    async with app.run_test(size=(80, 24)) as pilot:
        await shown_problem(pilot)
        seed(path)
        screen = app.screen
        # Both handled before the screen closes, as when the second thread's report is already
        # queued behind the first (posting both and letting Textual deliver them lets the close
        # win most of the time, which is why this took a loaded machine to show).
        screen.on_data_loaded(DataLoaded(0, None, 0))
        screen.on_data_loaded(DataLoaded(0, None, 0))
        await wait_for_screen(pilot, lambda app: isinstance(app.screen, OverviewScreen), what="the overview back")
        await pilot.pause()
        assert isinstance(app.screen, OverviewScreen) and len(app.screen_stack) == 1


def _old_schema(path: str) -> None:
    # A database from before the connector's migrations: only a foreign table.
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()


async def test_old_schema_message(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    _old_schema(path)
    app = build_app(path)
    async with app.run_test(size=(80, 24)) as pilot:
        shown = await shown_problem(pilot)
        assert "has another schema version" in shown
        assert "no connector schema" in shown


@pytest.mark.sqlite_only  # SQLite itself; tests/postgres has the PostgreSQL side
async def test_newer_schema_message(db_path: str) -> None:
    conn = sqlite3.connect(db_path)
    conn.execute("INSERT INTO _sqlite_migrations(migration_set, name, applied_at) "
                 "VALUES ('connector', '9999_future', '2030-01-01')")
    conn.commit()
    conn.close()
    app = build_app(db_path)
    async with app.run_test(size=(80, 24)) as pilot:
        assert "newer connector" in await shown_problem(pilot)


def test_locked_database_message() -> None:
    """A lock timeout reads as 'locked', with no SQLite noise beyond one line."""
    message = describe("x.db", sqlite3.OperationalError("database is locked"))
    assert message == "Database x.db is locked by another process (database is locked); retrying."


def test_settings_precedence(tmp_path: Path) -> None:
    """--db wins over SIDECAR_DB, which wins over state.path; refresh comes from the file."""
    config = tmp_path / "config.yaml"
    config.write_text("state:\n  path: from-file.db\nconsole:\n  refresh_seconds: 0.5\n"
                      "chatwoot:\n  api_access_token: secret\n")
    assert load_settings(str(config), None, {}).db_path == "from-file.db"
    assert load_settings(str(config), None, {"SIDECAR_DB": "env.db"}).db_path == "env.db"
    settings = load_settings(None, "flag.db", {"SIDECAR_CONFIG": str(config), "SIDECAR_DB": "env.db"})
    assert (settings.db_path, settings.refresh_seconds) == ("flag.db", 0.5)


def test_settings_use_the_shared_schema(tmp_path: Path) -> None:
    """state and console are checked like the sidecar checks them, keys named; the sidecar's
    own sections are not the console's business (it must start to show a broken config)."""
    config = tmp_path / "config.yaml"
    config.write_text("chatwoot:\n  api_url: not-a-url\n  nonsense: 1\nconsole:\n  refresh_seconds: 2\n")
    settings = load_settings(str(config), None, {})
    assert (settings.db_path, settings.refresh_seconds) == ("data/connector.db", 2.0)
    for text, message in [("console:\n  refresh_seconds: 0\n", "console.refresh_seconds: must be between"),
                          ("console:\n  refresh_seconds: fast\n", "console.refresh_seconds: must be a number"),
                          ("state:\n  path: ''\n", "state.path: must not be empty"),
                          ("state:\n  pth: x.db\n", "state.pth: unknown key"),
                          ("state: [unclosed\n", "invalid YAML at line 2")]:
        config.write_text(text)
        with pytest.raises(SettingsError) as caught:
            load_settings(str(config), None, {})
        assert message in str(caught.value), text


def test_cli_bad_config_is_one_line(tmp_path: Path) -> None:
    """A missing --config file exits 2 with one line, not a traceback."""
    result = subprocess.run([sys.executable, "-m", "console", "--config", str(tmp_path / "nope.yaml")],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "config file not found" in result.stderr
