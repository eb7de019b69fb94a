"""Provides the console's own settings: where the database is and how often to refresh.

The console reads config.yaml through the same loader and schema as the sidecar
(:mod:`connector_config`), but validates only its own sections, ``state`` and ``console``
(plus the ``SIDECAR_DB`` / ``SIDECAR_DATABASE_URL`` / ``SIDECAR_CONFIG`` variables): a mistake elsewhere in the file is
the sidecar's to report, and the console must still start to show it. Everything else in that
file may hold secrets; the masked effective config comes from the database instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from connector_config import ConfigError, ConsoleConfig, StateConfig, load_raw, section_from_mapping
from connector_config.errors import Refused
from connector_config.urls import check_database_url


class SettingsError(Exception):
    """The config file could not be used (one-line message for the operator)."""


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    """What the console needs to start."""

    db_path: str
    """Where the state is: the SQLite file shared with the sidecar, or a PostgreSQL URL."""
    refresh_seconds: float = ConsoleConfig().refresh_seconds
    """Longest time between two full refreshes of the visible screen."""


def load_settings(
    config: str | None = None, db: str | None = None, env: Mapping[str, str] | None = None,
    database_url: str | None = None,
) -> ConsoleSettings:
    """Resolves the settings: ``--database-url`` wins, then ``--db``, then the config's state
    (``SIDECAR_DATABASE_URL`` / ``state.database_url`` when set, else ``SIDECAR_DB`` /
    ``state.path``), as the sidecar resolves it.

    Args:
        config: ``--config PATH``; else ``$SIDECAR_CONFIG``; else ``./config.yaml`` if present.
        db: ``--db PATH`` (a SQLite file).
        env: the environment (``os.environ`` by default).
        database_url: ``--database-url URL`` (PostgreSQL).

    Returns:
        The console settings.

    Raises:
        SettingsError: the named config file is missing or unreadable, or ``state`` or
            ``console`` holds a bad value (the message names the key).
    """
    env = os.environ if env is None else env
    try:
        raw, _ = load_raw(config, env)
        state: StateConfig = section_from_mapping(raw, "state", env)
        console: ConsoleConfig = section_from_mapping(raw, "console", env)
    except ConfigError as exc:
        raise SettingsError(str(exc)) from None
    if database_url is not None:
        try:
            location = check_database_url(database_url)
        except Refused as exc:
            raise SettingsError(f"--database-url: {exc.reason}") from None
        if not location:
            raise SettingsError("--database-url: must not be empty")
    else:
        location = db or state.location
    return ConsoleSettings(db_path=location, refresh_seconds=console.refresh_seconds)
