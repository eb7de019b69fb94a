"""The way back to config.yaml: deep_merge of a POST /config patch, and the write-back that reads
back the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector_config import (
    ConfigError,
    config_from_mapping,
    deep_merge,
    load_raw,
)
from tests.connector_config.helpers import SHIPPED, write

# --- deep_merge --------------------------------------------------------------------------------


def test_deep_merge() -> None:
    base = {"server": {"host": "a", "port": 1}, "routing": {"rules": [{"crew": "x"}]}, "k": 1}
    patch = {"server": {"port": 2}, "routing": {"rules": []}, "new": {"a": 1}}
    merged = deep_merge(base, patch)
    assert merged == {
        "server": {"host": "a", "port": 2},
        "routing": {"rules": []},
        "k": 1,
        "new": {"a": 1},
    }
    assert base["server"] == {"host": "a", "port": 1}  # inputs untouched
    merged["new"]["a"] = 2
    assert patch["new"] == {"a": 1}  # no aliasing


def test_deep_merge_scalar_replaces_mapping_and_back() -> None:
    assert deep_merge({"a": {"b": 1}}, {"a": 5}) == {"a": 5}
    assert deep_merge({"a": 5}, {"a": {"b": 1}}) == {"a": {"b": 1}}
    assert deep_merge({"a": {"b": 1}}, {"a": None}) == {"a": None}


def test_patch_then_validate() -> None:
    raw, _ = load_raw(str(SHIPPED), env={})
    config = config_from_mapping(deep_merge(raw, {"processing": {"max_attempts": 3}}), env={})
    assert config.processing.max_attempts == 3
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(deep_merge(raw, {"processing": {"max_attempts": 0}}), env={})
    assert caught.value.key == "processing.max_attempts"


# --- the write-back of POST /config ------------------------------------------------------------------


@pytest.mark.parametrize("value", [0.00001, 1e-7, 2.5e-12, 1e20, 1.5e16, 123456789.0, 0.1])
def test_written_floats_read_back_as_the_same_number(value: float) -> None:
    """ruamel writes 1e-05, which the start-up loader (YAML 1.1) reads as a string."""
    from connector_config import parse_yaml, render_patched_yaml

    text = render_patched_yaml("processing:\n  # kept\n  debounce_seconds: 2\n",
                               {"processing": {"debounce_seconds": value}})
    assert "# kept" in text
    assert parse_yaml("config.yaml", text)["processing"]["debounce_seconds"] == value


def test_a_read_only_file_is_not_replaced(tmp_path: Path) -> None:
    from connector_config import write_atomically

    path = write(tmp_path, "server: {port: 5000}\n")
    path.chmod(0o444)
    with pytest.raises(PermissionError):
        write_atomically(path, "server: {port: 6000}\n")
    assert path.read_text(encoding="utf-8") == "server: {port: 5000}\n"
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]  # no temp file left
    path.chmod(0o644)
    write_atomically(path, "server: {port: 6000}\n")
    assert path.read_text(encoding="utf-8") == "server: {port: 6000}\n"
