"""The team policy's pure parts: which mode a turn runs in, who the contact lists name, and the
config that declares them (refused with the key named)."""

from __future__ import annotations

import pytest

from connector_config import ConfigError, config_from_mapping
from connector_config.team import contact_matches
from sidecar.queue.policy import may_be_passive, mode_for

CONFIG = config_from_mapping({
    "routing": {"mode": "auto", "rules": [{"channel": "whatsapp", "crew": "a", "mode": "shadow"},
                                          {"channel": "facebook", "crew": "b"}]},
    "inboxes": {5: {"mode": "draft"}},
})


@pytest.mark.parametrize("rule, inbox, mode", [
    (0, 5, "shadow"),  # the rule's own mode wins over its inbox
    (1, 5, "draft"),   # a rule without one: the inbox's
    (1, 6, "auto"),    # neither: routing.mode
    (None, None, "auto"),
])
def test_mode_precedence(rule: int | None, inbox: int | None, mode: str) -> None:
    assert mode_for(CONFIG, rule, inbox) == mode


def test_passive_modes_keep_serving_conversations_humans_own() -> None:
    assert may_be_passive(CONFIG, 6, "auto")  # some rule is in shadow mode
    plain = config_from_mapping({"routing": {"rules": [{"channel": "whatsapp", "crew": "a"}]}})
    assert not may_be_passive(plain, 5, "auto")
    assert may_be_passive(plain, 5, "draft")  # the conversation's last turn was a draft


def test_contact_rules_match_phone_email_id_and_label() -> None:
    contact = {"id": 42, "phone_number": "+55 11 91234-0000", "email": "Ana@Example.com"}
    assert contact_matches(("phone:+551191234-0000",), contact, ()) == "phone:+551191234-0000"
    assert contact_matches(("email:ana@example.com",), contact, ()) == "email:ana@example.com"
    assert contact_matches(("id:41", "id:42"), contact, ()) == "id:42"
    assert contact_matches(("label:vip",), contact, ("vip",)) == "label:vip"
    assert contact_matches(("label:vip", "id:1"), contact, ()) is None
    assert contact_matches(("phone:+5511",), {"id": 1}, ()) is None  # no phone: no match


@pytest.mark.parametrize("raw, key", [
    ({"inboxes": {"x": {}}}, "inboxes"),
    ({"inboxes": {5: {"mode": "silent"}}}, "inboxes"),
    ({"inboxes": {5: {"business_hours": {"timezone": "Mars/Olympus"}}}}, "timezone"),
    ({"inboxes": {5: {"business_hours": {"weekly": {"mon": "18:00-08:00"}}}}}, "weekly"),
    ({"inboxes": {5: {"business_hours": {"holidays": ["25/12"]}}}}, "holidays"),
    ({"contacts": {"deny": ["nick:bob"]}}, "contacts.deny"),
    ({"routing": {"min_confidence": 2}}, "routing.min_confidence"),
    ({"handoff": {"summary_messages": 99}}, "handoff.summary_messages"),
    ({"reply_pacing": {"pigeon": {"split": True}}}, "reply_pacing"),
])
def test_bad_team_settings_are_refused_naming_the_key(raw: dict, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(raw)
    assert key in str(caught.value)
