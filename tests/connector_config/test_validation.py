"""Validation: every error names the dotted key and never echoes the value; bad input only ever
raises ConfigError."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector_config import (
    Config,
    ConfigError,
    CrewConfig,
    config_from_mapping,
    config_to_dict,
)
from tests.connector_config.helpers import VALID_CREW, build, error_for

# --- validation errors name the dotted key -----------------------------------------------------


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
