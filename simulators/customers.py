"""Simulated customers writing to a FakeChatwoot at a steady pace (used by ``--demo``)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import Sequence

from .fake_chatwoot import FakeChatwoot
from .payloads import FakeConversation

# Each topic has Portuguese and English lines; the crews and rules key on these words.
TEXTS: dict[str, tuple[list[str], list[str]]] = {
    "order": (
        ["Oi! Meu pedido #{order} ainda não chegou, podem verificar?",
         "Bom dia, qual o prazo de entrega do pedido {order}?",
         "O rastreio do meu pedido parou há 3 dias 😟"],
        ["Hi, where is my order #{order}? It hasn't arrived yet.",
         "Can you check the delivery status of order {order}?"],
    ),
    "price": (
        ["Quanto custa a barraca Trail 2P?", "Qual o preço do saco de dormir -5°C?",
         "Tem desconto para comprar 2 mochilas?"],
        ["What's the price of the Trail Tent 2P?", "How much is the 40L backpack?",
         "I'd like to buy two sleeping bags, any discount?"],
    ),
    "hours": (
        ["Qual o horário de funcionamento da loja?", "Vocês abrem no sábado?"],
        ["What are your opening hours?", "Are you open on Sundays?"],
    ),
    "human": (
        ["Quero falar com um atendente, por favor.", "Posso falar com um humano?"],
        ["Can I talk to a human agent please?", "I need a real person, not a bot."],
    ),
    "smalltalk": (
        ["Oi, tudo bem?", "Obrigado!", "Ok, vou aguardar.", "Boa tarde!"],
        ["Hello!", "Thanks a lot!", "Ok, I'll wait.", "Good afternoon"],
    ),
}
TOPIC_WEIGHTS = {"order": 4, "price": 4, "hours": 2, "human": 1, "smalltalk": 2}
HUMAN_REPLIES = ("Oi, aqui é o Carlos, da equipe. Já resolvi para você!", "Hi, Carlos from the team here. All sorted!")
BURST_FOLLOW_UPS = (["?", "alguém aí?", "é urgente", "obrigado"], ["?", "anyone there?", "it's urgent", "thanks"])


def _pick_text(rng: random.Random, portuguese: bool) -> str:
    topic = rng.choices(list(TOPIC_WEIGHTS), weights=list(TOPIC_WEIGHTS.values()))[0]
    lines = TEXTS[topic][0 if portuguese else 1]
    return rng.choice(lines).format(order=rng.randint(48000, 48999))


def _open_all(chatwoot: FakeChatwoot, channels: Sequence[str], count: int) -> list[FakeConversation]:
    """Spread ``count`` conversations over the channels; one Instagram DM comes through a page."""
    convs: list[FakeConversation] = []
    via_page_done = False
    for i in range(max(count, len(channels))):
        channel = channels[i % len(channels)]
        via_page = channel == "instagram" and i >= len(channels) and not via_page_done
        via_page_done = via_page_done or via_page
        convs.append(chatwoot.open_conversation(channel, instagram_via_page=via_page))
    if "instagram" in channels and not via_page_done:
        convs.append(chatwoot.open_conversation("instagram", instagram_via_page=True))
    return convs


async def _pause(stop: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds`` unless ``stop`` is set first; True means stop."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


async def _say(chatwoot: FakeChatwoot, conv: FakeConversation, text: str, counts: Counter[str]) -> None:
    status, _ = await chatwoot.customer_says(conv, text)
    counts["messages"] += 1
    if not 200 <= status < 300:
        counts["errors"] += 1


async def _burst(chatwoot: FakeChatwoot, conv: FakeConversation, texts: list[str], gaps: list[float],
                 stop: asyncio.Event, counts: Counter[str]) -> None:
    for text, gap in zip(texts, gaps, strict=True):
        if await _pause(stop, gap):
            return
        await _say(chatwoot, conv, text, counts)


async def run_customers(
    chatwoot: FakeChatwoot, *, rate_per_second: float,
    channels: Sequence[str] = ("whatsapp", "facebook", "instagram", "webwidget"),
    stop: asyncio.Event, rng: random.Random | None = None, conversations: int = 12,
) -> dict[str, int]:
    """Customers write until ``stop`` is set; agents answer and resolve conversations handed off to them.

    Returns counts: conversations, messages, bursts, resolved, agent_replies, errors (non-2xx or
    unreachable deliveries of customer messages).
    """
    rng = rng or random.Random()
    convs = _open_all(chatwoot, list(channels), conversations)
    counts: Counter[str] = Counter(conversations=len(convs), messages=0, bursts=0, resolved=0,
                                  agent_replies=0, errors=0)
    interval = 1.0 / max(rate_per_second, 0.001)
    bursts: set[asyncio.Task[None]] = set()
    # WhatsApp customers write mostly in Portuguese; other channels are mixed.
    speaks_pt = {c.display_id: rng.random() < (0.9 if c.channel == "whatsapp" else 0.6) for c in convs}
    while not await _pause(stop, interval * rng.uniform(0.7, 1.3)):
        conv = rng.choice(convs)
        pt = speaks_pt[conv.display_id]
        if conv.status == "open" and rng.random() < 0.5:
            # Handed off to a human: an agent answers and closes it; the customer's next message
            # brings it back to pending, into the bot's hands.
            await chatwoot.agent_says(conv, HUMAN_REPLIES[0 if pt else 1])
            await chatwoot.resolve(conv)
            counts["agent_replies"] += 1
            counts["resolved"] += 1
            continue
        if conv.status != "resolved" and rng.random() < 0.03:
            await chatwoot.resolve(conv)
            counts["resolved"] += 1
            continue
        await _say(chatwoot, conv, _pick_text(rng, pt), counts)
        if rng.random() < 0.2:  # a burst: 1-2 quick follow-ups, which the sidecar must answer once
            counts["bursts"] += 1
            follow_ups = [rng.choice(BURST_FOLLOW_UPS[0 if pt else 1]) for _ in range(rng.randint(1, 2))]
            gaps = [rng.uniform(0.2, 0.6) for _ in follow_ups]
            # In its own task so one typing customer does not hold up everyone else's pace.
            bursts.add(asyncio.create_task(_burst(chatwoot, conv, follow_ups, gaps, stop, counts)))
            bursts = {b for b in bursts if not b.done()}
    await asyncio.gather(*bursts)
    return dict(counts)
