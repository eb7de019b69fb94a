"""Secrets: webhook secret forms, every secret listed, masked, and never in an error."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from connector_config import (
    Config,
    config_to_dict,
    masked_config_dict,
    secret_values,
)
from tests.connector_config.helpers import VALID_CREW, build, error_for

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
