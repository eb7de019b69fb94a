"""End to end: a customer message on each channel is answered by the crew its rule picks."""

from __future__ import annotations

import pytest

from sidecar.simulators import FakeChatwoot, FakeCrew
from tests.harness import SidecarProcess


@pytest.mark.parametrize(
    ("channel", "via_page", "crew_name"),
    [
        ("whatsapp", False, "whatsapp_crew"),
        ("facebook", False, "facebook_crew"),
        ("instagram", False, "instagram_crew"),
        ("instagram", True, "instagram_crew"),
        ("webwidget", False, "webwidget_crew"),
    ],
)
async def test_customer_message_is_answered_by_the_rule_crew(
    sidecar: SidecarProcess, chatwoot: FakeChatwoot, crew: FakeCrew, channel: str, via_page: bool, crew_name: str
) -> None:
    """Each channel's message reaches its crew and the answer lands in its conversation."""
    conv = chatwoot.open_conversation(channel, instagram_via_page=via_page)
    status, body = await chatwoot.customer_says(conv, "Olá, qual o horário de atendimento?")
    assert status == 200 and body["status"] == "accepted"
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)
    [request] = [r for r in crew.requests if r.kind == "crew"]
    assert request.body["crew"] == crew_name
    assert request.body["chatwoot"]["channel"] == channel
    assert request.headers["Idempotency-Key"] == request.body["request_id"]
