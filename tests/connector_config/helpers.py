"""Provides the small helpers the connector_config tests share (build a Config, catch its error)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connector_config import Config, ConfigError, config_from_mapping

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED = REPO_ROOT / "config.yaml"
"""The config.yaml the repository ships."""
VALID_CREW = {"backend": "http", "url": "http://crews:8080/handle"}
"""A crew that passes validation, to vary one key of."""


def build(raw: dict[str, Any], env: dict[str, str] | None = None) -> Config:
    return config_from_mapping(raw, env=env or {})


def error_for(raw: Any, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(raw, env=env or {})
    return caught.value


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path
