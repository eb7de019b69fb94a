"""Provides unique, validly signed Chatwoot webhooks, fast enough to feed a load generator.

Each conversation's ``message_created`` body is built once by the simulators' payload builders
(``ChatwootWorld`` + ``message_event``, serialised like Rails by ``chatwoot_json``) with a
sentinel message id and text; every delivery then only swaps in a fresh message id and text
and is signed over the exact bytes sent. Every delivery has a new delivery id and message id.
"""

from __future__ import annotations

import itertools
import random
import time
import uuid
from dataclasses import dataclass

from simulators.payloads import ChatwootWorld, message_event
from simulators.signing import chatwoot_json, sign

CHANNELS = ("whatsapp", "facebook", "instagram", "webwidget")
_ID_SENTINEL = b"987654321"
_CONV_SENTINEL = b"876543219"
_CONTACT_SENTINEL = b"765432198"
_TEXT_SENTINEL = "BENCHTEXTSENTINEL"
_TEXTS = ("Olá, qual o horário de atendimento?", "Where is my order? It has not arrived yet.",
          "Quanto custa a barraca trail 2p?", "Do you ship to Portugal?", "Meu pedido chegou quebrado")


@dataclass(frozen=True, slots=True)
class Delivery:
    delivery_id: str
    message_id: int
    conversation_id: int
    headers: dict[str, str]
    body: bytes


class WebhookFactory:
    """Unique signed ``message_created`` deliveries across ``conversations`` conversations.

    With ``new_conversations`` every delivery opens a conversation of its own (a fresh
    conversation id per message, starting at ``first_conversation_id``): nothing folds or waits
    behind an earlier message, so each message costs one crew call and one reply. Each such
    conversation has a contact of its own (same id as the conversation).
    """

    def __init__(self, secret: str, *, conversations: int = 40, seed: int = 7, first_message_id: int = 1_000_000,
                 run_tag: str | None = None, new_conversations: bool = False,
                 first_conversation_id: int = 10_000_000) -> None:
        self.secret = secret
        world = ChatwootWorld(rng=random.Random(seed))
        self._templates: list[tuple[int, bytes]] = []
        self._new_conversations = new_conversations
        self._conv_ids = itertools.count(first_conversation_id)
        for i in range(conversations if not new_conversations else len(CHANNELS)):
            conv = world.open_conversation(CHANNELS[i % len(CHANNELS)])
            if new_conversations:
                # A new conversation is a new customer too (a contact's budgets count across its
                # conversations: one contact writing hundreds of messages a second is a flood).
                conv.display_id = int(_CONV_SENTINEL)
                conv.contact.id = int(_CONTACT_SENTINEL)
            msg = world.customer_message(conv, _TEXT_SENTINEL)
            msg.id = int(_ID_SENTINEL)
            body = chatwoot_json(message_event(conv, msg))
            assert body.count(_ID_SENTINEL) >= 1 and b"987654321" not in body.replace(_ID_SENTINEL, b"")
            self._templates.append((conv.display_id, body))
        self._ids = itertools.count(first_message_id)
        self._tag = run_tag or uuid.uuid4().hex[:8]
        self._n = itertools.count()

    @property
    def conversation_ids(self) -> list[int]:
        return [cid for cid, _ in self._templates]

    def next(self, *, bad_signature: bool = False, now: int | None = None) -> Delivery:
        n = next(self._n)
        message_id = next(self._ids)
        conv_id, template = self._templates[n % len(self._templates)]
        text = f"{_TEXTS[n % len(_TEXTS)]} #{n}".encode()
        body = template.replace(_ID_SENTINEL, str(message_id).encode()).replace(_TEXT_SENTINEL.encode(), text)
        if self._new_conversations:
            conv_id = next(self._conv_ids)
            body = body.replace(_CONV_SENTINEL, str(conv_id).encode()).replace(_CONTACT_SENTINEL, str(conv_id).encode())
        stamp = int(time.time()) if now is None else now
        signature = sign(body, self.secret, stamp)
        if bad_signature:  # same length and shape, wrong MAC
            signature = signature[:-4] + ("0000" if not signature.endswith("0000") else "1111")
        delivery_id = f"bench-{self._tag}-{n}"
        headers = {
            "Content-Type": "application/json",
            "X-Chatwoot-Delivery": delivery_id,
            "X-Chatwoot-Timestamp": str(stamp),
            "X-Chatwoot-Signature": signature,
        }
        return Delivery(delivery_id, message_id, conv_id, headers, body)

    def write_wrk_file(self, path: str, count: int, *, bad_signature: bool = False) -> None:
        """One request per line: ``delivery<TAB>timestamp<TAB>signature<TAB>body`` (read by rotate.lua).

        Compact JSON never contains a raw tab or newline, so the line format is unambiguous.
        """
        now = int(time.time())
        with open(path, "wb") as fh:
            for _ in range(count):
                d = self.next(bad_signature=bad_signature, now=now)
                h = d.headers
                fh.write(b"\t".join((h["X-Chatwoot-Delivery"].encode(), h["X-Chatwoot-Timestamp"].encode(),
                                     h["X-Chatwoot-Signature"].encode(), d.body)) + b"\n")
