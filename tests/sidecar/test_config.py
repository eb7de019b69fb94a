"""Tests for sidecar.config: defaults, the shipped file, env overrides, validation, masking."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.config import (
    ChatwootConfig,
    Config,
    ConfigError,
    CrewConfig,
    RoutingRule,
    config_from_mapping,
    config_to_dict,
    deep_merge,
    load_config,
    load_raw,
    masked_config_dict,
    secret_values,
    validate_outbound_url,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED = REPO_ROOT / "config.yaml"


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


# --- environment overrides --------------------------------------------------------------------

ENV_CASES = [
    ("SIDECAR_HOST", "127.0.0.1", lambda c: c.server.host, "127.0.0.1"),
    ("SIDECAR_PORT", "8080", lambda c: c.server.port, 8080),
    (
        "SIDECAR_PUBLIC_URL",
        "http://sidecar:5000",
        lambda c: c.server.public_url,
        "http://sidecar:5000",
    ),
    ("SIDECAR_ADMIN_TOKEN", "admin-secret", lambda c: c.server.admin_token, "admin-secret"),
    ("SIDECAR_DB", "/var/lib/x.db", lambda c: c.state.path, "/var/lib/x.db"),
    ("SIDECAR_LOG_DIR", "/var/log/x", lambda c: c.logging.dir, "/var/log/x"),
    (
        "CHATWOOT_API_URL",
        "http://chatwoot:3000",
        lambda c: c.chatwoot.api_url,
        "http://chatwoot:3000",
    ),
    ("CHATWOOT_API_ACCESS_TOKEN", "cw-token", lambda c: c.chatwoot.api_access_token, "cw-token"),
    ("CHATWOOT_WEBHOOK_SECRET", "whsec", lambda c: c.chatwoot.webhook_secrets, ("whsec",)),
    (
        "MCP_CREW_API_URL",
        "http://crew:8000/api",
        lambda c: c.mcp_crew.api_url,
        "http://crew:8000/api",
    ),
    ("MCP_CREW_API_KEY", "crew-key", lambda c: c.mcp_crew.api_key, "crew-key"),
    (
        "MCP_CREW_DECISION_ENGINE_URL",
        "http://engine:9000/decide",
        lambda c: c.mcp_crew.decision_engine_url,
        "http://engine:9000/decide",
    ),
    ("MAX_CONTEXT_MESSAGES", "25", lambda c: c.context.max_messages, 25),
]


@pytest.mark.parametrize(
    ("name", "value", "read", "expected"), ENV_CASES, ids=[c[0] for c in ENV_CASES]
)
def test_every_env_override(name: str, value: str, read: Any, expected: Any) -> None:
    assert read(build({}, env={name: value})) == expected


def test_env_wins_over_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "server: {port: 7000, host: 10.0.0.1}\nchatwoot: {api_url: 'http://file:3000'}\n",
    )
    env = {"SIDECAR_PORT": "7001", "CHATWOOT_API_URL": "http://env:3000"}
    config = load_config(str(path), env=env)
    assert config.server.port == 7001
    assert config.server.host == "10.0.0.1"
    assert config.chatwoot.api_url == "http://env:3000"


def test_empty_env_variable_counts_as_unset() -> None:
    config = build({"server": {"port": 7000}}, env={"SIDECAR_PORT": "", "SIDECAR_ADMIN_TOKEN": " "})
    assert config.server.port == 7000
    assert config.server.admin_token == ""


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"SIDECAR_PORT": "abc"}, "server.port"),
        ({"SIDECAR_PORT": "0"}, "server.port"),
        ({"SIDECAR_PORT": "70000"}, "server.port"),
        ({"MAX_CONTEXT_MESSAGES": "ten"}, "context.max_messages"),
        ({"CHATWOOT_API_URL": "ftp://chatwoot"}, "chatwoot.api_url"),
        ({"MCP_CREW_API_URL": "http://169.254.169.254/"}, "mcp_crew.api_url"),
        ({"SIDECAR_PUBLIC_URL": "sidecar:5000"}, "server.public_url"),
    ],
)
def test_env_values_are_validated_like_file_values(env: dict[str, str], key: str) -> None:
    assert error_for({}, env=env).key == key


def test_bad_env_port_message_names_the_variable() -> None:
    error = error_for({}, env={"SIDECAR_PORT": "abc"})
    assert str(error) == "server.port: must be an integer (from SIDECAR_PORT)"


# --- webhook secrets --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "env", "expected"),
    [
        ({"webhook_secret": "one"}, {}, ("one",)),
        ({"webhook_secret": ""}, {}, ()),
        ({"webhook_secret": ["new", "old"]}, {}, ("new", "old")),
        ({}, {"CHATWOOT_WEBHOOK_SECRET": "new, old,"}, ("new", "old")),
        ({"webhook_secret": "file"}, {"CHATWOOT_WEBHOOK_SECRET": "env"}, ("env",)),
    ],
)
def test_webhook_secret_forms(
    raw: dict[str, Any], env: dict[str, str], expected: tuple[str, ...]
) -> None:
    assert build({"chatwoot": raw}, env=env).chatwoot.webhook_secrets == expected


def test_webhook_secret_written_back_as_string_or_list() -> None:
    one = build({"chatwoot": {"webhook_secret": "one"}})
    two = build({"chatwoot": {"webhook_secret": ["a", "b"]}})
    assert config_to_dict(one)["chatwoot"]["webhook_secret"] == "one"
    assert config_to_dict(two)["chatwoot"]["webhook_secret"] == ["a", "b"]
    assert "webhook_secrets" not in config_to_dict(two)["chatwoot"]


def test_webhook_secret_list_items_are_checked_without_echoing_them() -> None:
    error = error_for({"chatwoot": {"webhook_secret": ["keep-me-secret", 5]}})
    assert error.key == "chatwoot.webhook_secret[1]"
    assert "keep-me-secret" not in str(error)


# --- validation errors name the dotted key -----------------------------------------------------

VALID_CREW = {"backend": "http", "url": "http://crews:8080/handle"}

ERROR_CASES: list[tuple[dict[str, Any], str]] = [
    ({"server": {"port": 0}}, "server.port"),
    ({"server": {"port": 65536}}, "server.port"),
    ({"server": {"port": "5000"}}, "server.port"),
    ({"server": {"port": True}}, "server.port"),
    ({"server": {"port": 5000.0}}, "server.port"),
    ({"server": {"host": ""}}, "server.host"),
    ({"server": {"max_body_bytes": 0}}, "server.max_body_bytes"),
    ({"server": {"request_timeout_seconds": 0}}, "server.request_timeout_seconds"),
    ({"server": {"admin_token": 1234}}, "server.admin_token"),
    ({"state": {"path": ""}}, "state.path"),
    ({"logging": {"level": "LOUD"}}, "logging.level"),
    ({"logging": {"json": "yes"}}, "logging.json"),
    ({"logging": {"backup_count": -1}}, "logging.backup_count"),
    ({"chatwoot": {"allow_unsigned": "false"}}, "chatwoot.allow_unsigned"),
    ({"chatwoot": {"inbox_ids": ["1"]}}, "chatwoot.inbox_ids[0]"),
    ({"chatwoot": {"inbox_ids": [1, True]}}, "chatwoot.inbox_ids[1]"),
    ({"chatwoot": {"inbox_ids": {"a": 1}}}, "chatwoot.inbox_ids"),
    ({"chatwoot": {"api_url": "chatwoot.local"}}, "chatwoot.api_url"),
    ({"chatwoot": {"timeout_seconds": -1}}, "chatwoot.timeout_seconds"),
    ({"chatwoot": {"bot_user_id": "me"}}, "chatwoot.bot_user_id"),
    ({"chatwoot": {"webhook_secret": 42}}, "chatwoot.webhook_secret"),
    ({"mcp_crew": {"dialect": "v2"}}, "mcp_crew.dialect"),
    ({"mcp_crew": {"timeout_seconds": 0}}, "mcp_crew.timeout_seconds"),
    ({"mcp_crew": {"decision_timeout_seconds": "2s"}}, "mcp_crew.decision_timeout_seconds"),
    ({"mcp_crew": {"decision_engine_url": "file:///etc/passwd"}}, "mcp_crew.decision_engine_url"),
    ({"context": {"max_messages": -1}}, "context.max_messages"),
    ({"processing": {"max_attempts": 0}}, "processing.max_attempts"),
    ({"processing": {"debounce_seconds": -0.5}}, "processing.debounce_seconds"),
    ({"processing": {"debounce_seconds": float("nan")}}, "processing.debounce_seconds"),
    ({"processing": {"lease_seconds": float("inf")}}, "processing.lease_seconds"),
    ({"processing": {"lease_seconds": 10**400}}, "processing.lease_seconds"),
    (
        {"processing": {"debounce_seconds": 5, "debounce_max_seconds": 1}},
        "processing.debounce_max_seconds",
    ),
    ({"processing": {"breaker_failure_ratio": 0}}, "processing.breaker_failure_ratio"),
    ({"processing": {"breaker_failure_ratio": 1.5}}, "processing.breaker_failure_ratio"),
    ({"processing": {"breaker_min_requests": -1}}, "processing.breaker_min_requests"),
    (
        {"processing": {"retry_base_seconds": 60, "retry_max_seconds": 10}},
        "processing.retry_base_seconds",
    ),
    ({"processing": {"lease_seconds": 0}}, "processing.lease_seconds"),
    ({"processing": {"concurrency": 0}}, "processing.concurrency"),
    ({"processing": {"workers_enabled": 1}}, "processing.workers_enabled"),
    ({"processing": []}, "processing"),
    ({"routing": {"default_crew": ""}}, "routing.default_crew"),
    ({"routing": {"rules": {"crew": "x"}}}, "routing.rules"),
    ({"routing": {"rules": [{"channel": "whatsapp"}]}}, "routing.rules[0].crew"),
    ({"routing": {"rules": [{"crew": "", "channel": "whatsapp"}]}}, "routing.rules[0].crew"),
    ({"routing": {"rules": [{"crew": "x"}]}}, "routing.rules[0]"),
    ({"routing": {"rules": ["whatsapp"]}}, "routing.rules[0]"),
    (
        {"routing": {"rules": [{"crew": "x", "channel": ["whatsapp", "orkut"]}]}},
        "routing.rules[0].channel[1]",
    ),
    ({"routing": {"rules": [{"crew": "x", "inbox_id": "3"}]}}, "routing.rules[0].inbox_id"),
    ({"routing": {"rules": [{"crew": "x", "keywords": [""]}]}}, "routing.rules[0].keywords[0]"),
    ({"routing": {"rules": [{"crew": "x", "labels": {"a": 1}}]}}, "routing.rules[0].labels"),
    ({"health": {"probe_interval_seconds": 0}}, "health.probe_interval_seconds"),
    ({"console": {"refresh_seconds": -1}}, "console.refresh_seconds"),
    ({"crews": ["faq"]}, "crews"),
    ({"crews": {"x": {"url": "http://a"}}}, "crews.x.backend"),
    ({"crews": {"x": {"backend": "grpc", "url": "http://a"}}}, "crews.x.backend"),
    ({"crews": {"x": {"backend": "mcp"}}}, "crews.x.url"),
    ({"crews": {"x": {"backend": "crewai_amp"}}}, "crews.x.url"),
    ({"crews": {"x": {"backend": "http", "url": "ftp://a"}}}, "crews.x.url"),
    ({"crews": {"x": {"backend": "mcp", "url": "http://a", "tool": ""}}}, "crews.x.tool"),
    ({"crews": {"x": {"backend": "local"}}}, "crews.x.answers"),
    (
        {"crews": {"x": {"backend": "local", "answers": [{"reply": "hi"}]}}},
        "crews.x.answers[0].keywords",
    ),
    (
        {"crews": {"x": {"backend": "local", "answers": [{"keywords": "hi"}]}}},
        "crews.x.answers[0].reply",
    ),
    ({"crews": {"x": {**VALID_CREW, "timeout_seconds": 0}}}, "crews.x.timeout_seconds"),
    ({"crews": {"x": {**VALID_CREW, "dialect": "v9"}}}, "crews.x.dialect"),
    ({"crews": {"x": {**VALID_CREW, "headers": {"X-A": 1}}}}, "crews.x.headers.X-A"),
    ({"crews": {"x": {**VALID_CREW, "headers": {"X-A": "a\r\nX-B: b"}}}}, "crews.x.headers.X-A"),
    ({"crews": {"x": {**VALID_CREW, "headers": {"Bad Name": "a"}}}}, "crews.x.headers.Bad Name"),
    ({"crews": {"x": None}}, "crews.x.backend"),
    ({"crews": {"faq": {"backend": "local", "fallback_reply": "a"}, "faq ": {}}}, "crews.faq"),
    ({"crews": {" ": VALID_CREW}}, "crews"),
]


@pytest.mark.parametrize(("raw", "key"), ERROR_CASES, ids=[key for _, key in ERROR_CASES])
def test_validation_error_names_the_key(raw: dict[str, Any], key: str) -> None:
    error = error_for(raw)
    assert error.key == key
    assert str(error) == f"{error.key}: {error.reason}"
    assert "\n" not in str(error)


def test_invalid_regular_expression_is_reported() -> None:
    rules = [
        {"crew": "a", "channel": "whatsapp"},
        {"crew": "b", "keywords": "oi"},
        {"crew": "c", "pattern": "(unclosed"},
    ]
    error = error_for({"routing": {"rules": rules}})
    assert error.key == "routing.rules[2].pattern"
    assert error.reason.startswith("invalid regular expression: ")


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"processing": {"max_atempts": 3}}, "processing.max_atempts"),
        ({"serverr": {}}, "serverr"),
        ({"chatwoot": {"webhook_secrets": ["a"]}}, "chatwoot.webhook_secrets"),
        (
            {"routing": {"rules": [{"crew": "x", "channels": "whatsapp"}]}},
            "routing.rules[0].channels",
        ),
        ({"crews": {"x": {**VALID_CREW, "urll": "http://b"}}}, "crews.x.urll"),
        ({"crews": {"x": {**VALID_CREW, "name": "x"}}}, "crews.x.name"),
        (
            {
                "crews": {
                    "x": {"backend": "local", "answers": [{"keywords": "a", "reply": "b", "x": 1}]}
                }
            },
            "crews.x.answers[0].x",
        ),
    ],
)
def test_unknown_key_is_an_error(raw: dict[str, Any], key: str) -> None:
    assert str(error_for(raw)) == f"{key}: unknown key"


def test_top_level_must_be_a_mapping() -> None:
    assert error_for(["server"]).key == "config"  # type: ignore[arg-type]


def test_non_string_keys_are_refused() -> None:
    assert error_for({"server": {1: 2}}).key == "server"


# --- rules and crews parse into the documented shapes ------------------------------------------


def test_rule_scalars_and_lists() -> None:
    config = build(
        {
            "routing": {
                "rules": [
                    {"crew": "vendas", "channel": "WhatsApp", "inbox_id": 3, "keywords": "preço"},
                    {"crew": "vip", "labels": ["vip", "gold"], "inbox_id": [1, 2]},
                    {"crew": "pedidos", "pattern": r"\bpedido\s*#?\d+"},
                ]
            }
        }
    )
    assert config.routing.rules == (
        RoutingRule(crew="vendas", channel=("whatsapp",), inbox_id=(3,), keywords=("preço",)),
        RoutingRule(crew="vip", labels=("vip", "gold"), inbox_id=(1, 2)),
        RoutingRule(crew="pedidos", pattern=r"\bpedido\s*#?\d+"),
    )


def test_contract_crews_example_parses() -> None:
    raw = yaml.safe_load(
        """
crews:
  vendas:  {backend: mcp, url: "http://crews:8000/mcp", tool: handle_message, token: "t-vendas"}
  suporte: {backend: crewai_amp, url: "https://suporte-abc.crewai.com", token: "t-sup", deadline_seconds: 600}
  api:     {backend: http, url: "http://crews:8080/", dialect: chatwootai, headers: {X-Api-Key: hk123456, X-Tenant: loja}}
  faq:
    backend: local
    answers:
      - {keywords: [horário, horario, hours], reply: "Atendemos de 8h às 18h."}
    handoff_keywords: [atendente, humano, human]
    fallback_reply: "Vou chamar um atendente."
"""
    )
    config = build(raw)
    assert [crew.name for crew in config.crews] == ["vendas", "suporte", "api", "faq"]
    vendas = config.crew("vendas")
    assert vendas == CrewConfig(
        name="vendas", backend="mcp", url="http://crews:8000/mcp", token="t-vendas"
    )
    assert config.crew("suporte").deadline_seconds == 600.0  # type: ignore[union-attr]
    api = config.crew("api")
    assert api is not None and api.headers == (("X-Api-Key", "hk123456"), ("X-Tenant", "loja"))
    assert api.dialect == "chatwootai"
    faq = config.crew("faq")
    assert faq is not None and faq.answers[0].keywords == ("horário", "horario", "hours")
    assert faq.handoff_keywords == ("atendente", "humano", "human")
    assert config.crew("missing") is None
    assert build(config_to_dict(config)) == config


def test_known_crews_are_unique_and_ordered() -> None:
    config = build(
        {
            "routing": {
                "default_crew": "suporte",
                "rules": [
                    {"crew": "faq", "keywords": "oi"},
                    {"crew": "whatsapp_crew", "channel": "whatsapp"},
                    {"crew": "faq", "channel": "sms"},
                    {"crew": "suporte", "channel": "email"},
                ],
            },
            "crews": {
                "faq": {"backend": "local", "fallback_reply": "ok"},
                "extra": {"backend": "http", "url": "http://x"},
            },
        }
    )
    assert config.known_crews == ("suporte", "faq", "whatsapp_crew", "extra")


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("http://chatwoot:3000", "http://chatwoot:3000"),
        ("http://chatwoot:3000/", "http://chatwoot:3000"),
        ("http://chatwoot:3000/api", "http://chatwoot:3000"),
        ("http://chatwoot:3000/api/", "http://chatwoot:3000"),
        ("https://example.com/chat/api", "https://example.com/chat"),
        ("https://example.com/apis", "https://example.com/apis"),
    ],
)
def test_api_base(url: str, base: str) -> None:
    assert ChatwootConfig(api_url=url).api_base == base
    assert build({"chatwoot": {"api_url": url}}).chatwoot.api_base == base


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


# --- secrets ----------------------------------------------------------------------------------

SECRET_RAW: dict[str, Any] = {
    "server": {"admin_token": "admin-token-AAAA"},
    "chatwoot": {
        "api_access_token": "chatwoot-token-BBBB",
        "webhook_secret": ["whsec-new-CCCC", "abc"],
    },
    "mcp_crew": {"api_key": "mcp-key-DDDD"},
    "crews": {
        "vendas": {
            "backend": "mcp",
            "url": "http://crews:8000/mcp",
            "token": "crew-token-EEEE",
            "headers": {"X-Api-Key": "header-key-FFFF", "X-Tenant": "loja"},
        }
    },
}
ALL_SECRETS = [
    "admin-token-AAAA",
    "chatwoot-token-BBBB",
    "whsec-new-CCCC",
    "abc",
    "mcp-key-DDDD",
    "crew-token-EEEE",
    "header-key-FFFF",
]


def test_secret_values_lists_every_secret() -> None:
    assert sorted(secret_values(build(SECRET_RAW))) == sorted(ALL_SECRETS)
    assert secret_values(Config()) == []


def test_masked_dict_hides_every_secret_and_keeps_last_four() -> None:
    masked = masked_config_dict(build(SECRET_RAW))
    text = repr(masked)
    for secret in ALL_SECRETS:
        assert f"'{secret}'" not in text
        assert secret[:-4] not in text or len(secret) <= 4
    assert masked["server"]["admin_token"] == "****AAAA"
    assert masked["chatwoot"]["api_access_token"] == "****BBBB"
    assert masked["chatwoot"]["webhook_secret"] == ["****CCCC", "****"]
    assert masked["mcp_crew"]["api_key"] == "****DDDD"
    assert masked["crews"]["vendas"]["token"] == "****EEEE"
    assert masked["crews"]["vendas"]["headers"] == {"X-Api-Key": "****FFFF", "X-Tenant": "loja"}
    assert "admin-token" not in text and "whsec-new" not in text and "header-key" not in text


def test_masked_dict_leaves_empty_secrets_empty() -> None:
    masked = masked_config_dict(Config())
    assert masked["server"]["admin_token"] == ""
    assert masked["chatwoot"]["webhook_secret"] == ""
    assert masked["mcp_crew"]["api_key"] == ""


def test_plain_dict_keeps_secrets_and_does_not_alias() -> None:
    config = build(SECRET_RAW)
    plain = config_to_dict(config)
    assert plain["server"]["admin_token"] == "admin-token-AAAA"
    plain["server"]["admin_token"] = "changed"
    assert config.server.admin_token == "admin-token-AAAA"
    yaml.safe_dump(plain)  # plain types only


@pytest.mark.parametrize(
    "raw",
    [
        {"mcp_crew": {"api_url": "http://user:hunter2secret@crew/"}},
        {"crews": {"x": {"backend": "http", "url": "http://user:hunter2secret@crew/"}}},
        {"crews": {"x": {**VALID_CREW, "headers": {"Authorization": "Bearer hunter2secret\n"}}}},
    ],
)
def test_errors_never_contain_secrets(raw: dict[str, Any]) -> None:
    assert "hunter2secret" not in str(error_for(raw))


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


# --- outbound URLs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://chatwoot:3000",
        "https://chatwoot.example.com/api",
        "http://127.0.0.1:8000/mcp",
        "http://localhost:5002",
        "http://10.0.0.5/",
        "http://192.168.1.10:3000",
        "http://[::1]:8000/",
        "HTTPS://Example.COM",
        "http://169.254.example.com/",  # a name, not a literal address
        "http://metadata.example.com/",  # only the exact well-known names are refused
        "http://my-metadata/",
    ],
)
def test_outbound_url_accepted(url: str) -> None:
    validate_outbound_url("crews.x.url", url)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://files.example.com/", "must be an http:// or https:// URL"),
        ("file:///etc/passwd", "must be an http:// or https:// URL"),
        ("gopher://x/", "must be an http:// or https:// URL"),
        ("chatwoot:3000", "must be an http:// or https:// URL"),
        ("http://", "must include a host"),
        ("http:///path", "must include a host"),
        ("http://user:pass@chatwoot/", "must not contain credentials"),
        ("http://token@chatwoot/", "must not contain credentials"),
        ("http://chatwoot:99999/", "is not a valid URL"),
        ("http://chat woot/", "must not contain spaces"),
        ("http://169.254.169.254/latest/meta-data/", "link-local/metadata address refused"),
        ("http://169.254.0.1:8080/", "link-local/metadata address refused"),
        ("http://[fd00:ec2::254]/", "link-local/metadata address refused"),
        ("http://[fe80::1]/", "link-local/metadata address refused"),
        ("http://[fe80::1%25eth0]/", "link-local/metadata address refused"),
        ("http://[::ffff:169.254.169.254]/", "link-local/metadata address refused"),
        ("http://[::ffff:a9fe:a9fe]/", "link-local/metadata address refused"),
        ("http://[64:ff9b::a9fe:a9fe]/", "link-local/metadata address refused"),
        ("http://2852039166/", "link-local/metadata address refused"),
        ("http://0xa9fea9fe/", "link-local/metadata address refused"),
        ("http://169.254.169.254./", "link-local/metadata address refused"),
        ("http://１６９.２５４.１６９.２５４/", "link-local/metadata address refused"),
        # Metadata services by their well-known names and their addresses outside 169.254/16.
        ("http://metadata.google.internal/computeMetadata/v1/", "link-local/metadata address refused"),
        ("http://METADATA.Google.Internal./", "link-local/metadata address refused"),
        ("http://metadata/computeMetadata/v1/", "link-local/metadata address refused"),
        ("http://instance-data/latest/meta-data/", "link-local/metadata address refused"),
        ("http://instance-data.ec2.internal/", "link-local/metadata address refused"),
        ("http://ｍｅｔａｄａｔａ.google.internal/", "link-local/metadata address refused"),
        ("http://100.100.100.200/latest/meta-data/", "link-local/metadata address refused"),
        ("http://192.0.0.192/opc/v1/", "link-local/metadata address refused"),
        ("http://168.63.129.16/machine", "link-local/metadata address refused"),
        ("http://[fd20:ce::254]/", "link-local/metadata address refused"),
        ("http://[::ffff:100.100.100.200]/", "link-local/metadata address refused"),
    ],
)
def test_outbound_url_refused(url: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_outbound_url("crews.x.url", url)
    assert caught.value.key == "crews.x.url"
    assert caught.value.reason.startswith(reason)
    assert url not in str(caught.value)


def test_outbound_url_empty() -> None:
    validate_outbound_url("mcp_crew.api_url", "")
    with pytest.raises(ConfigError) as caught:
        validate_outbound_url("mcp_crew.api_url", "", allow_empty=False)
    assert caught.value.reason == "is required"


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"chatwoot": {"api_url": "http://169.254.169.254"}}, "chatwoot.api_url"),
        ({"mcp_crew": {"api_url": "http://[fd00:ec2::254]/"}}, "mcp_crew.api_url"),
        (
            {"mcp_crew": {"decision_engine_url": "http://a:b@engine/"}},
            "mcp_crew.decision_engine_url",
        ),
        (
            {"crews": {"x": {"backend": "http", "url": "http://[::ffff:169.254.169.254]/"}}},
            "crews.x.url",
        ),
    ],
)
def test_config_urls_use_the_outbound_check(raw: dict[str, Any], key: str) -> None:
    assert error_for(raw).key == key


# --- ConfigError ------------------------------------------------------------------------------


def test_config_error_shape_and_pickling() -> None:
    error = ConfigError("processing.max_attempts", "must be >= 1")
    assert str(error) == "processing.max_attempts: must be >= 1"
    assert (error.key, error.reason) == ("processing.max_attempts", "must be >= 1")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.key, copy.reason, str(copy)) == (error.key, error.reason, str(error))


# --- robustness: bad input only ever raises ConfigError -----------------------------------------

_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.integers(), children, max_size=4)
    ),
    max_leaves=12,
)
_section_names = st.sampled_from(
    [
        "server",
        "state",
        "logging",
        "chatwoot",
        "mcp_crew",
        "context",
        "processing",
        "routing",
        "crews",
        "health",
        "console",
    ]
)
_known_keys = st.sampled_from(
    [
        "port",
        "host",
        "api_url",
        "webhook_secret",
        "rules",
        "crew",
        "channel",
        "pattern",
        "backend",
        "url",
        "answers",
        "headers",
        "max_attempts",
        "inbox_ids",
        "default_crew",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        _section_names,
        _values | st.dictionaries(_known_keys, _values, max_size=4),
        max_size=4,
    )
)
def test_arbitrary_input_raises_only_config_error(raw: dict[str, Any]) -> None:
    try:
        config = config_from_mapping(raw, env={})
    except ConfigError as error:
        assert error.key and error.reason
    else:
        assert build(config_to_dict(config)) == config


# --- declared once: the schema documents itself; messages name the key, never a secret ----------


def _records() -> list[type]:
    import connector_config.schema as schema

    return [obj for obj in vars(schema).values()
            if isinstance(obj, type) and hasattr(obj, "__pydantic_fields__") and not obj.__name__.startswith("_")]


def test_every_key_is_documented_in_the_schema() -> None:
    records = _records()
    assert len(records) >= 14
    for record in records:
        for name, info in record.__pydantic_fields__.items():
            assert (info.description or "").strip(), f"{record.__name__}.{name} has no docstring"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"processing": {"max_attempts": "3"}}, "processing.max_attempts: must be an integer, not a string"),
        ({"processing": {"max_attempts": 0}}, "processing.max_attempts: must be >= 1"),
        ({"server": {"port": 5000.0}}, "server.port: must be an integer, not a number"),
        ({"logging": {"json": "yes"}}, "logging.json: must be true or false, not a string"),
        ({"processing": {"concurrency": None, "nonsense": 1}}, "processing.nonsense: unknown key"),
        ({"routing": {"rules": [{"crew": "a", "channel": "sms"}, {"crew": "b", "keywords": "oi"},
                                {"crew": "c", "channel": ["whatsapp", "orkut"]}]}},
         "routing.rules[2].channel[1]: must be one of whatsapp, facebook, instagram, webwidget, api, "
         "email, telegram, sms, line, twitter, tiktok (got 'orkut')"),
        ({"processing": {"retry_base_seconds": 60, "retry_max_seconds": 10}},
         "processing.retry_base_seconds: must not exceed retry_max_seconds"),
        ({"crews": {"vendas": {"backend": "mcp"}}}, "crews.vendas.url: is required"),
        ({"crews": {"vendas": {"backend": "local", "answers": [{"keywords": "oi"}]}}},
         "crews.vendas.answers[0].reply: is required"),
        ({"processing": {"lease_seconds": 10**400}}, "processing.lease_seconds: must be a finite number"),
        ({"source_path": "/etc/passwd"}, "source_path: unknown key"),
    ],
)
def test_messages_name_the_dotted_key(raw: dict[str, Any], message: str) -> None:
    assert str(error_for(raw)) == message


SECRETISH = "s3cr3t-Value-0123456789"

_MISPLACED: list[dict[str, Any]] = [
    {"server": {"port": SECRETISH}},
    {"server": {"max_body_bytes": [SECRETISH]}},
    {"server": {"public_url": f"sidecar/{SECRETISH}"}},
    {"server": {"host": {SECRETISH: 1}}},
    {"processing": {"debounce_seconds": SECRETISH}},
    {"processing": {"breaker_failure_ratio": SECRETISH}},
    {"logging": {"json": SECRETISH}},
    {"chatwoot": {"inbox_ids": [SECRETISH]}},
    {"chatwoot": {"bot_user_id": SECRETISH}},
    {"chatwoot": {"webhook_secret": [SECRETISH, ""]}},
    {"chatwoot": {"webhook_secret": {SECRETISH: SECRETISH}}},
    {"chatwoot": {"api_url": f"http://metadata.google.internal/?token={SECRETISH}"}},
    {"mcp_crew": {"api_url": f"https://user:{SECRETISH}@crew/"}},
    {"routing": {"rules": [{"crew": "x", "inbox_id": SECRETISH}]}},
    {"routing": {"rules": [{"crew": "x", "pattern": f"({SECRETISH}"}]}},
    {"crews": {"x": {"backend": "http", "url": "http://crew", "timeout_seconds": SECRETISH}}},
    {"crews": {"x": {"backend": "http", "url": "http://crew", "headers": {"X-Key": [SECRETISH]}}}},
    {"crews": {"x": {"backend": "mcp", "url": f"http://crew/?k={SECRETISH}", "tool": " "}}},
    {"crews": {"x": {"backend": "http", "url": "http://crew", "token": 5, "extra": SECRETISH}}},
    {"crews": {"x": {"backend": "http", "url": "http://crew", "token": [SECRETISH]}}},
]


@pytest.mark.parametrize("raw", _MISPLACED, ids=range(len(_MISPLACED)))
def test_errors_never_echo_the_value(raw: dict[str, Any]) -> None:
    """pydantic's errors carry the input; ours carry only the key, the reason and the kind."""
    error = error_for(raw)
    assert SECRETISH not in str(error) and SECRETISH[:8] not in str(error)
    assert error.__suppress_context__  # pydantic's own error (which prints the input) is not chained


def test_env_errors_name_the_variable() -> None:
    assert str(error_for({}, env={"SIDECAR_PORT": "0"})) == (
        "server.port: must be between 1 and 65535 (from SIDECAR_PORT)")
    assert error_for({}, env={"MCP_CREW_API_URL": "http://metadata/"}).reason.endswith("(from MCP_CREW_API_URL)")


def test_records_check_values_built_in_code_too() -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(Config().server, port=0)
    with pytest.raises(ValueError):
        CrewConfig(name="x", backend="mcp")  # no url
    assert dataclasses.replace(Config().server, port=6000).port == 6000


# --- processing.echo_grace_seconds --------------------------------------------------------------


def test_echo_grace_is_a_documented_processing_key() -> None:
    assert Config().processing.echo_grace_seconds == 10.0
    assert build({"processing": {"echo_grace_seconds": 2.5}}).processing.echo_grace_seconds == 2.5
    assert error_for({"processing": {"echo_grace_seconds": 0}}).key == "processing.echo_grace_seconds"
    assert "echo_grace_seconds: 10" in SHIPPED.read_text(encoding="utf-8")


# --- crews the routing names that nothing serves ---------------------------------------------------


def test_unserved_crews_are_reported_not_refused() -> None:
    """The shipped file routes to MCP-Crew's crews before mcp_crew.api_url is filled in: it
    must still load (zero-config start), and the crews nothing serves are listed."""
    shipped = load_config(str(SHIPPED), env={})
    assert shipped.unserved_crews == (
        "suporte", "whatsapp_crew", "facebook_crew", "instagram_crew", "webwidget_crew")
    assert "faq" not in shipped.unserved_crews  # listed under crews: (local)
    assert load_config(str(SHIPPED), env={"MCP_CREW_API_URL": "http://crew:8000/api"}).unserved_crews == ()
    served = build({"routing": {"default_crew": "faq", "rules": [{"crew": "faq", "channel": "sms"}]},
                    "crews": {"faq": {"backend": "local", "fallback_reply": "oi"}}})
    assert served.unserved_crews == ()


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
