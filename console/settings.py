"""Provides the console's own settings: where the database is and how often to refresh.

The console deliberately reads only ``state.path`` and ``console.refresh_seconds`` from
config.yaml (plus the ``SIDECAR_DB`` / ``SIDECAR_CONFIG`` variables). Everything else in that
file may hold secrets; the masked effective config comes from the database instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_DB = "data/connector.db"
DEFAULT_REFRESH = 1.0


class SettingsError(Exception):
    """The config file could not be used (one-line message for the operator)."""


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    """What the console needs to start."""

    db_path: str
    """The SQLite file shared with the sidecar."""
    refresh_seconds: float = DEFAULT_REFRESH
    """Longest time between two full refreshes of the visible screen."""


def _section(doc: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = doc.get(name)
    return value if isinstance(value, Mapping) else {}


def load_settings(
    config: str | None = None, db: str | None = None, env: Mapping[str, str] | None = None
) -> ConsoleSettings:
    """Resolves the settings: ``--db`` wins, then ``SIDECAR_DB``, then ``state.path``.

    Args:
        config: ``--config PATH``; else ``$SIDECAR_CONFIG``; else ``./config.yaml`` if present.
        db: ``--db PATH``.
        env: the environment (``os.environ`` by default).

    Returns:
        The console settings.

    Raises:
        SettingsError: the named config file is missing or is not YAML.
    """
    env = os.environ if env is None else env
    explicit = config or env.get("SIDECAR_CONFIG") or None
    path = Path(explicit or "config.yaml")
    doc: Mapping[str, Any] = {}
    if path.is_file():
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            # Only the first line: a YAML error's context could quote a secret-bearing line.
            raise SettingsError(f"cannot read {path}: {str(exc).splitlines()[0]}") from exc
        doc = loaded if isinstance(loaded, Mapping) else {}
    elif explicit:
        raise SettingsError(f"config file not found: {path}")
    db_path = db or env.get("SIDECAR_DB") or _section(doc, "state").get("path") or DEFAULT_DB
    refresh = _section(doc, "console").get("refresh_seconds", DEFAULT_REFRESH)
    try:
        refresh_seconds = float(refresh)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"console.refresh_seconds: not a number: {refresh!r}") from exc
    if not 0.1 <= refresh_seconds <= 60:
        raise SettingsError("console.refresh_seconds: must be between 0.1 and 60")
    return ConsoleSettings(db_path=str(db_path), refresh_seconds=refresh_seconds)
