"""Reply pacing: a long answer split at paragraph breaks into several messages, each after a
typing pause proportional to its length (capped), per channel."""

from __future__ import annotations

from sidecar.outbound.shaping import split_text
from simulators import FakeChatwoot, FakeCrew
from tests.conftest import SidecarFactory

ANSWER = ("Claro! Temos três barracas para 2 pessoas.\n\n"
          "A Trail 2P custa R$ 899,90 e pesa 2,1 kg.\n\n"
          "A Ultralight 2P custa R$ 1.299,00 e pesa 1,2 kg; é a mais leve que vendemos e monta em três minutos.")


def test_split_text_keeps_paragraphs_and_joins_short_ones() -> None:
    assert split_text(ANSWER, 500) == [ANSWER]
    assert split_text(ANSWER, 110) == [
        "Claro! Temos três barracas para 2 pessoas.\n\nA Trail 2P custa R$ 899,90 e pesa 2,1 kg.",
        "A Ultralight 2P custa R$ 1.299,00 e pesa 1,2 kg; é a mais leve que vendemos e monta em três minutos."]


def test_split_text_cuts_long_paragraphs_at_sentences_then_spaces() -> None:
    text = "Primeira frase aqui. Segunda frase um pouco maior aqui. " + "palavra " * 12
    parts = split_text(text.strip(), 40)
    assert all(len(p) <= 40 for p in parts)
    assert parts[0] == "Primeira frase aqui."
    assert " ".join(parts).split() == text.split()


async def _paced(sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew,
                 channel: str) -> tuple[list[str | None], list[float], list[str]]:
    await sidecar_factory({"reply_pacing": {channel: {
        "split": True, "max_chars": 110, "chars_per_second": 200, "max_pause_seconds": 0.4}}})
    crew.responder = lambda envelope: [{"type": "reply", "content": ANSWER}]
    conv = chatwoot.open_conversation(channel)
    await chatwoot.customer_says(conv, "Quais barracas vocês têm?")
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 2)
    posted = [m for m in chatwoot.conversation(conv.display_id).messages if m.via_api and not m.private]
    return [m.content for m in posted], [m.created_at for m in posted], chatwoot.typing(conv.display_id)


async def test_a_long_answer_arrives_in_parts_with_typing_between_them_on_the_website(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    contents, times, typing = await _paced(sidecar_factory, chatwoot, crew, "webwidget")
    assert contents == split_text(ANSWER, 110)
    # The second part (101 characters at 200/s) waits 0.4 s (the cap) after the first.
    assert times[1] - times[0] >= 0.4
    assert typing == ["on", "off"]


async def test_channels_without_typing_get_the_pause_but_no_typing_calls(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    contents, times, typing = await _paced(sidecar_factory, chatwoot, crew, "whatsapp")
    assert contents == split_text(ANSWER, 110) and len(contents) == 2
    assert times[1] - times[0] >= 0.4
    assert typing == []


async def test_a_channel_without_pacing_gets_the_answer_whole(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    await sidecar_factory({"reply_pacing": {"webwidget": {"split": True, "max_chars": 110}}})
    crew.responder = lambda envelope: [{"type": "reply", "content": ANSWER}]
    conv = chatwoot.open_conversation("facebook")
    await chatwoot.customer_says(conv, "Quais barracas vocês têm?")
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)
    assert chatwoot.replies(conv.display_id) == [ANSWER]
