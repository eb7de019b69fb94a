"""The schema's shapes: routing rules and crews, processing.echo_grace_seconds, crews nothing
serves."""

from __future__ import annotations

import pytest
import yaml

from connector_config import (
    ChatwootConfig,
    Config,
    CrewConfig,
    RoutingRule,
    config_to_dict,
    load_config,
)
from tests.connector_config.helpers import SHIPPED, build, error_for

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
