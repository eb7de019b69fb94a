"""End to end: a customer message on each channel is answered by the crew its rule picks."""

from __future__ import annotations

import json

import pytest

from simulators import FakeChatwoot, FakeCrew
from tests.harness import InProcessSidecar


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
    sidecar: InProcessSidecar, chatwoot: FakeChatwoot, crew: FakeCrew, channel: str, via_page: bool, crew_name: str
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


async def test_attachments_reach_the_crew_with_their_urls_and_types(
    sidecar: InProcessSidecar, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    """An image with a caption and an audio note: one normalised message each, whatever the channel."""
    conv = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(conv, "Olha a foto do produto", attachments=["image"])
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)
    [message] = crew.crew_requests()[0]["messages"]
    [attachment] = message["attachments"]
    assert attachment["file_type"] == "image" and attachment["url"].startswith("http")
    assert message["content"] == "Olha a foto do produto"
    await chatwoot.customer_says(conv, None, attachments=["audio"])
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 2)
    [audio] = crew.crew_requests()[1]["messages"][0]["attachments"]
    assert audio["file_type"] == "audio"
    envelope = crew.crew_requests()[1]
    assert envelope["schema"] == "chatwoot-crew/v1" and envelope["contact"]["name"]
    assert envelope["callback_url"].endswith("/webhook/mcp-crew")
    # Credentials never travel in the envelope.
    assert chatwoot.token not in json.dumps(envelope) and crew.api_key not in json.dumps(envelope)
