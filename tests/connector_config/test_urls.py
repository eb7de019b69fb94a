"""Outbound URLs: what the sidecar may call (and the cloud metadata hosts it refuses)."""

from __future__ import annotations

from typing import Any

import pytest

from connector_config import (
    ConfigError,
    validate_outbound_url,
)
from tests.connector_config.helpers import error_for

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
