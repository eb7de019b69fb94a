"""Environment variables over config.yaml: every override, validated like the file, named in
errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connector_config import (
    load_config,
)
from tests.connector_config.helpers import build, error_for, write

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
