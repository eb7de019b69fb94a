"""config.yaml read into a Config: defaults, the file's place, the shipped file, YAML problems, the
loader the console shares."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from connector_config import (
    Config,
    ConfigError,
    config_to_dict,
    load_config,
    load_raw,
    secret_values,
)
from tests.connector_config.helpers import SHIPPED, build, write

# --- defaults and loading -------------------------------------------------------------------


def test_defaults_match_the_contract() -> None:
    config = build({})
    assert config == Config()
    assert (config.server.host, config.server.port) == ("0.0.0.0", 5000)
    assert config.server.max_body_bytes == 1048576
    assert config.server.admin_token == ""
    assert config.state.path == "data/connector.db"
    assert config.logging.dir == "logs"
    assert config.chatwoot.allow_unsigned is False
    assert config.chatwoot.inbox_ids == ()
    assert config.chatwoot.bot_user_id is None
    assert config.mcp_crew.dialect == "connector-v1"
    assert (config.mcp_crew.timeout_seconds, config.mcp_crew.decision_timeout_seconds) == (
        30.0,
        2.0,
    )
    assert config.context.max_messages == 10
    processing = config.processing
    assert (processing.debounce_seconds, processing.max_attempts) == (2.0, 6)
    assert (processing.retry_base_seconds, processing.retry_max_seconds) == (5.0, 1800.0)
    assert processing.lease_seconds == 60.0
    assert (
        processing.breaker_failure_ratio,
        processing.breaker_min_requests,
        processing.breaker_open_seconds,
    ) == (0.7, 10, 30.0)
    assert config.routing.default_crew == "suporte"
    assert config.crews == ()
    assert config.source_path is None


def test_config_is_frozen() -> None:
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.server.port = 1  # type: ignore[misc]


def test_missing_default_file_means_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(env={})
    assert config == Config()


def test_default_file_is_read_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "server: {port: 6001}\n")
    monkeypatch.chdir(tmp_path)
    config = load_config(env={})
    assert config.server.port == 6001
    assert config.source_path == "config.yaml"


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError) as caught:
        load_config(missing, env={})
    assert caught.value.key == missing
    assert "not found" in caught.value.reason


def test_sidecar_config_env_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "server: {port: 6002}\n", name="other.yaml")
    monkeypatch.chdir(tmp_path)  # ./config.yaml absent: must not matter
    assert load_config(env={"SIDECAR_CONFIG": str(path)}).server.port == 6002
    with pytest.raises(ConfigError):
        load_config(env={"SIDECAR_CONFIG": str(tmp_path / "missing.yaml")})


def test_explicit_path_wins_over_env(tmp_path: Path) -> None:
    chosen = write(tmp_path, "server: {port: 6003}\n", name="a.yaml")
    other = write(tmp_path, "server: {port: 6004}\n", name="b.yaml")
    config = load_config(str(chosen), env={"SIDECAR_CONFIG": str(other)})
    assert config.server.port == 6003
    assert config.source_path == str(chosen)


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "# nothing yet\n")
    assert dataclasses.replace(load_config(str(path), env={}), source_path=None) == Config()


def test_empty_section_and_empty_value_keep_defaults() -> None:
    config = build({"server": None, "processing": {"max_attempts": None}})
    assert config.server.port == 5000
    assert config.processing.max_attempts == 6


def test_durations_accept_decimals_and_integers() -> None:
    config = build({"processing": {"debounce_seconds": 0.5, "lease_seconds": 30}})
    assert config.processing.debounce_seconds == 0.5
    assert config.processing.lease_seconds == 30.0
    assert isinstance(config.processing.lease_seconds, float)


# --- the shipped config.yaml ------------------------------------------------------------------


def test_shipped_config_loads() -> None:
    config = load_config(str(SHIPPED), env={})
    assert config.routing.default_crew == "suporte"
    channels = {channel for rule in config.routing.rules for channel in rule.channel}
    assert {"whatsapp", "facebook", "instagram", "webwidget"} <= channels
    assert any("preço" in rule.keywords for rule in config.routing.rules)
    faq = config.crew("faq")
    assert faq is not None and faq.backend == "local"
    assert "faq" in [rule.crew for rule in config.routing.rules]
    assert config.state.path == "data/connector.db"
    assert config.logging.dir == "logs"
    assert secret_values(config) == []


def test_shipped_config_has_every_key() -> None:
    raw, _ = load_raw(str(SHIPPED), env={})
    expected = config_to_dict(Config())
    assert list(raw) == list(expected)
    for section, values in expected.items():
        if isinstance(values, dict) and section != "crews":
            assert set(raw[section]) == set(values), section


def test_shipped_config_round_trips() -> None:
    config = dataclasses.replace(load_config(str(SHIPPED), env={}), source_path=None)
    assert build(config_to_dict(config)) == config
    yaml_text = yaml.safe_dump(config_to_dict(config), allow_unicode=True)
    assert build(yaml.safe_load(yaml_text)) == config


# --- YAML problems ----------------------------------------------------------------------------


def test_bad_yaml_is_a_config_error_with_a_line(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: 5000\n  host: [unclosed\nstate: {}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), env={})
    assert caught.value.key == str(path)
    assert "invalid YAML at line" in caught.value.reason


def test_yaml_error_does_not_echo_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'chatwoot:\n  api_access_token: "s3cr3t-token\n')
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), env={})
    assert "s3cr3t" not in str(caught.value)


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: 5000\nserver:\n  port: 6000\n")
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), env={})
    assert "duplicate key 'server'" in caught.value.reason
    assert "line 3" in caught.value.reason


def test_yaml_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    # `<<: *anchor` followed by an explicit key is not a duplicate key.
    text = (
        "crews:\n"
        "  a: &base {backend: http, url: 'http://crews:1'}\n"
        "  b: {<<: *base, url: 'http://crews:2'}\n"
    )
    config = load_config(str(write(tmp_path, text)), env={})
    assert [(c.name, c.backend, c.url) for c in config.crews] == [
        ("a", "http", "http://crews:1"),
        ("b", "http", "http://crews:2"),
    ]


@pytest.mark.parametrize("text", ["- server\n- state\n", "just a string\n", "42\n"])
def test_top_level_not_a_mapping(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), env={})
    assert caught.value.key == str(path)
    assert "top level must be a mapping" in caught.value.reason


def test_python_object_tags_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "server: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError):
        load_config(str(path), env={})


def test_undecodable_file_and_directory(tmp_path: Path) -> None:
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError):
        load_config(str(binary), env={})
    with pytest.raises(ConfigError):
        load_config(str(tmp_path), env={})


def test_semantic_errors_from_a_file_name_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, "processing:\n  max_atempts: 3\n")
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), env={})
    assert str(caught.value) == "processing.max_atempts: unknown key"


# --- the loader shared with the console ------------------------------------------------------------


def test_an_empty_file_is_an_error_only_when_asked(tmp_path: Path) -> None:
    for text in ("", "  \n\n", "# only a comment\n"):
        path = write(tmp_path, text)
        assert load_raw(str(path), env={}) == ({}, str(path))
        with pytest.raises(ConfigError) as caught:
            load_raw(str(path), env={}, allow_empty=False)
        assert caught.value.key == str(path) and "empty" in caught.value.reason


def test_section_from_mapping_reads_one_section_only() -> None:
    from connector_config import section_from_mapping

    raw = {"state": {"path": "x.db"}, "chatwoot": {"api_url": "not a url"}, "console": {"refresh_seconds": 2}}
    assert section_from_mapping(raw, "state", {}).path == "x.db"
    assert section_from_mapping(raw, "state", {"SIDECAR_DB": "env.db"}).path == "env.db"
    assert section_from_mapping(raw, "console", {}).refresh_seconds == 2.0
    with pytest.raises(ConfigError) as caught:
        section_from_mapping({"console": {"refresh_seconds": 0}}, "console", {})
    assert caught.value.key == "console.refresh_seconds"
