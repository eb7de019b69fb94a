"""Chatwoot webhook bodies built from the facts in reference/chatwoot.md §2-§4, not copied samples.

Everything here is pure data: ``ChatwootWorld`` holds the account, agents, conversations and id
counters, and the ``*_event`` functions turn that state into the exact dicts Chatwoot serialises
(key order included, because Ruby keeps hash insertion order and so do Python dicts).
Per-channel differences live in one table, ``CHANNELS``.

Over 400 lines on purpose: it is Chatwoot's webhook vocabulary in one place. The builders nest
(an event holds a conversation, which holds messages, a contact, an inbox, attachments) and all
read ``ChatwootWorld``'s ids and the ``CHANNELS`` table; split up, every part would import the rest.
"""

from __future__ import annotations

import random
import string
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

FRONTEND_URL = "https://chat.acme-outdoor.example"
MESSAGE_TYPE_INT = {"incoming": 0, "outgoing": 1, "activity": 2, "template": 3}

IdStyle = Literal["wamid", "facebook", "instagram", "email", "telegram", "sms", "none"]
AddressStyle = Literal["phone_digits", "psid", "igsid", "uuid", "email", "telegram", "phone"]


@dataclass(frozen=True)
class ChannelTraits:
    """What differs between channels in a webhook body (§3 table, §4 contact_inbox/additional_attributes)."""

    channel_type: str
    inbox_id: int
    inbox_name: str
    message_ids: IdStyle
    contact_address: AddressStyle
    content_attributes: tuple[tuple[str, Any], ...] = ()
    conversation_attributes: Literal["none", "browser", "email", "instagram_dm"] = "none"
    contact_has_phone: bool = False
    contact_has_email: bool = False
    instagram_profile: bool = False


CHANNELS: dict[str, ChannelTraits] = {
    "whatsapp": ChannelTraits("Channel::Whatsapp", 21, "WhatsApp Support", "wamid", "phone_digits",
                              contact_has_phone=True),
    "facebook": ChannelTraits("Channel::FacebookPage", 22, "Acme Outdoor (Facebook)", "facebook", "psid",
                              (("in_reply_to_external_id", None),)),
    "instagram": ChannelTraits("Channel::Instagram", 23, "Acme Outdoor (Instagram)", "instagram", "igsid",
                               (("in_reply_to_external_id", None),), instagram_profile=True),
    # Instagram DMs received through a connected Facebook page: same inbox as the page (§4).
    "instagram_via_page": ChannelTraits("Channel::FacebookPage", 22, "Acme Outdoor (Facebook)", "instagram",
                                        "igsid", (("in_reply_to_external_id", None),), "instagram_dm",
                                        instagram_profile=True),
    "webwidget": ChannelTraits("Channel::WebWidget", 24, "Acme Outdoor Website", "none", "uuid",
                               (("in_reply_to", None),), "browser", contact_has_email=True),
    "api": ChannelTraits("Channel::Api", 25, "Acme API", "none", "uuid"),
    "email": ChannelTraits("Channel::Email", 26, "Support Email", "email", "email",
                           conversation_attributes="email", contact_has_email=True),
    "telegram": ChannelTraits("Channel::Telegram", 27, "Acme Telegram", "telegram", "telegram"),
    "sms": ChannelTraits("Channel::Sms", 28, "Acme SMS", "sms", "phone", contact_has_phone=True),
}


def traits_for(channel: str, instagram_via_page: bool = False) -> ChannelTraits:
    if instagram_via_page:
        if channel != "instagram":
            raise ValueError("instagram_via_page only applies to the instagram channel")
        return CHANNELS["instagram_via_page"]
    try:
        return CHANNELS[channel]
    except KeyError:
        raise ValueError(f"unknown channel {channel!r}; known: {sorted(CHANNELS)}") from None


# --------------------------------------------------------------------------------------------
# Model


@dataclass(frozen=True)
class Account:
    id: int = 7
    name: str = "Acme Outdoor"


@dataclass(frozen=True)
class Inbox:
    id: int
    name: str
    channel_type: str


@dataclass(frozen=True)
class Agent:
    """A Chatwoot user (human agent, or the service user behind a user token)."""

    id: int
    name: str
    email: str


@dataclass(frozen=True)
class AgentBot:
    id: int
    name: str


@dataclass(frozen=True)
class Team:
    id: int
    name: str


@dataclass
class Contact:
    id: int
    name: str
    source_id: str  # the contact_inbox address: phone digits, PSID, IGSID, widget UUID...
    contact_inbox_id: int
    phone_number: str | None = None
    email: str | None = None
    identifier: str | None = None
    additional_attributes: dict[str, Any] = field(default_factory=dict)
    custom_attributes: dict[str, Any] = field(default_factory=dict)
    thumbnail: str = ""
    hmac_verified: bool = False
    pubsub_token: str = ""
    created_at: float = field(default_factory=time.time)


Sender = Contact | Agent | AgentBot | None


@dataclass
class StoredMessage:
    id: int
    conversation_id: int
    content: str | None
    message_type: str  # "incoming" | "outgoing" | "activity" | "template"
    sender: Sender = None
    private: bool = False
    source_id: str | None = None
    content_type: str = "text"
    content_attributes: dict[str, Any] = field(default_factory=dict)
    additional_attributes: dict[str, Any] = field(default_factory=dict)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    status: str = "sent"
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    via_api: bool = False  # posted through the REST API (i.e. by the sidecar)

    def record(self) -> dict[str, Any]:
        """A flat, assertion-friendly view (used by FakeChatwoot.messages_in)."""
        return {
            "id": self.id,
            "conversation_id": self.conversation_id,
            "content": self.content,
            "message_type": self.message_type,
            "private": self.private,
            "sender_type": sender_type(self.sender),
            "sender_id": self.sender.id if self.sender else None,
            "source_id": self.source_id,
            "content_type": self.content_type,
            "content_attributes": dict(self.content_attributes),
            "attachments": list(self.attachments),
            "status": self.status,
            "created_at": self.created_at,
            "via_api": self.via_api,
        }


@dataclass
class FakeConversation:
    display_id: int
    channel: str  # contract channel name; Instagram through a page is still "instagram"
    inbox: Inbox
    contact: Contact
    account: Account
    status: str = "pending"
    labels: list[str] = field(default_factory=list)
    assignee: Agent | AgentBot | None = None
    team: Team | None = None
    messages: list[StoredMessage] = field(default_factory=list)
    instagram_via_page: bool = False
    additional_attributes: dict[str, Any] = field(default_factory=dict)
    custom_attributes: dict[str, Any] = field(default_factory=dict)
    priority: str | None = None
    snoozed_until: int | None = None
    waiting_since: float | None = None
    first_reply_created_at: float | None = None
    agent_last_seen_at: float = 0
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    @property
    def id(self) -> int:
        return self.display_id

    @property
    def traits(self) -> ChannelTraits:
        return traits_for(self.channel, self.instagram_via_page)

    @property
    def last_activity_at(self) -> float:
        return self.messages[-1].created_at if self.messages else self.created_at

    def last_public_message(self) -> StoredMessage | None:
        """``messages.chat.last``: neither private nor activity (§4)."""
        for msg in reversed(self.messages):
            if not msg.private and msg.message_type != "activity":
                return msg
        return None

    def unread_count(self) -> int:
        """Incoming messages since the last outgoing one, capped at 10 like Chatwoot."""
        count = 0
        for msg in reversed(self.messages):
            if msg.message_type == "outgoing" and not msg.private:
                break
            count += msg.message_type == "incoming"
        return min(count, 10)


# --------------------------------------------------------------------------------------------
# Small formatting helpers


def iso_ms(epoch: float | None) -> str | None:
    """Rails' ISO-8601 with milliseconds and ``Z``."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _epoch(value: float | None) -> int:
    return int(value) if value else 0


def _alnum(rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _digits(rng: random.Random, n: int) -> str:
    return str(rng.randint(1, 9)) + "".join(rng.choice(string.digits) for _ in range(n - 1))


def channel_message_id(style: IdStyle, rng: random.Random) -> str | None:
    """A channel-native message id (the top-level ``source_id``) in each platform's format."""
    if style == "wamid":
        return "wamid.HBgN" + _alnum(rng, 50, string.ascii_uppercase + string.digits)
    if style == "facebook":
        return "m_" + _alnum(rng, 92, string.ascii_letters + string.digits + "-_")
    if style == "instagram":
        return "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOj" + _alnum(rng, 52)
    if style == "email":
        return f"{uuid.UUID(int=rng.getrandbits(128))}@mail.example.com"
    if style == "telegram":
        return str(rng.randint(100, 999_999))
    if style == "sms":
        return "SM" + "".join(rng.choice("0123456789abcdef") for _ in range(32))
    return None


def changed(attribute: str, previous: Any, current: Any) -> dict[str, Any]:
    """One entry of ``changed_attributes`` (§4.1): a single-key dict."""
    return {attribute: {"previous_value": previous, "current_value": current}}


# --------------------------------------------------------------------------------------------
# Sender shapes (§3.1)


def sender_type(sender: Sender) -> str | None:
    if isinstance(sender, Contact):
        return "Contact"
    if isinstance(sender, Agent):
        return "User"
    if isinstance(sender, AgentBot):
        return "AgentBot"
    return None


def contact_webhook_data(contact: Contact, account: Account) -> dict[str, Any]:
    """Top-level contact sender: note there is no ``type`` key (removed in 2023)."""
    return {
        "account": account_data(account),
        "additional_attributes": dict(contact.additional_attributes),
        "avatar": contact.thumbnail,
        "custom_attributes": dict(contact.custom_attributes),
        "email": contact.email,
        "id": contact.id,
        "identifier": contact.identifier,
        "name": contact.name,
        "phone_number": contact.phone_number,
        "thumbnail": contact.thumbnail,
        "blocked": False,
    }


def contact_push_data(contact: Contact) -> dict[str, Any]:
    return {
        "additional_attributes": dict(contact.additional_attributes),
        "custom_attributes": dict(contact.custom_attributes),
        "email": contact.email,
        "id": contact.id,
        "identifier": contact.identifier,
        "name": contact.name,
        "phone_number": contact.phone_number,
        "thumbnail": contact.thumbnail,
        "blocked": False,
        "type": "contact",
    }


def sender_webhook_data(sender: Sender, account: Account) -> dict[str, Any] | None:
    if isinstance(sender, Contact):
        return contact_webhook_data(sender, account)
    if isinstance(sender, Agent):
        return {"id": sender.id, "name": sender.name, "email": sender.email, "type": "user"}
    if isinstance(sender, AgentBot):
        return {"id": sender.id, "name": sender.name, "type": "agent_bot"}
    return None


def sender_push_data(sender: Sender) -> dict[str, Any] | None:
    if isinstance(sender, Contact):
        return contact_push_data(sender)
    if isinstance(sender, Agent):
        return {"id": sender.id, "name": sender.name, "available_name": sender.name, "avatar_url": "",
                "type": "user", "availability_status": "online", "thumbnail": ""}
    if isinstance(sender, AgentBot):
        return {"id": sender.id, "name": sender.name, "avatar_url": "", "type": "agent_bot"}
    return None


def account_data(account: Account) -> dict[str, Any]:
    return {"id": account.id, "name": account.name}


def inbox_data(inbox: Inbox) -> dict[str, Any]:
    return {"id": inbox.id, "name": inbox.name}


def team_data(team: Team | None) -> dict[str, Any] | None:
    if team is None:
        return None
    return {"id": team.id, "name": team.name, "icon": None, "icon_color": None}


# --------------------------------------------------------------------------------------------
# Attachments (§3.2)

_ATTACHMENT_FILES = {
    "image": ("jpg", "image/jpeg", 184_233),
    "audio": ("ogg", "audio/ogg", 23_511),
    "video": ("mp4", "video/mp4", 2_402_114),
    "file": ("pdf", "application/pdf", 98_101),
}


def make_attachment(
    file_type: str,
    *,
    attachment_id: int,
    message_id: int,
    account_id: int,
    rng: random.Random,
    external_cdn: bool = False,
    filename: str | None = None,
    transcribed_text: str | None = None,
) -> dict[str, Any]:
    """An ``attachments[]`` element; media keys only for media types, like ``push_event_data``."""
    data: dict[str, Any] = {"id": attachment_id, "message_id": message_id, "file_type": file_type,
                            "account_id": account_id}
    if file_type == "location":
        data.update({"coordinates_lat": -23.5614, "coordinates_long": -46.6559, "fallback_title": "Localização",
                     "data_url": "https://maps.google.com/?q=-23.5614,-46.6559"})
    if file_type == "fallback":
        data.update({"fallback_title": "Unsupported content", "data_url": None})
    if file_type not in _ATTACHMENT_FILES:
        return data
    extension, content_type, size = _ATTACHMENT_FILES[file_type]
    name = filename or f"{file_type}_{attachment_id}.{extension}"
    signed = "eyJfcmFpbHMiOnsiZGF0YSI6" + _alnum(rng, 24) + "--" + _alnum(rng, 40, "0123456789abcdef")
    if external_cdn:  # incoming Instagram media point at Meta's CDN, not ActiveStorage
        url = f"https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id={_digits(rng, 17)}&signature={_alnum(rng, 40)}"
        thumb = url if file_type == "image" else ""
    else:
        url = f"{FRONTEND_URL}/rails/active_storage/blobs/redirect/{signed}/{name}"
        thumb = f"{FRONTEND_URL}/rails/active_storage/representations/redirect/{signed}/{name}" if file_type == "image" else ""
    data.update({"extension": extension, "content_type": content_type, "data_url": url, "thumb_url": thumb,
                 "file_size": size, "width": None, "height": None})  # not yet analysed by ActiveStorage
    if file_type == "audio":
        data["transcribed_text"] = transcribed_text or ""
    return data


# --------------------------------------------------------------------------------------------
# Message shapes


def push_message(conv: FakeConversation, msg: StoredMessage) -> dict[str, Any]:
    """``conversation.messages[0]``: push format, integer message_type, epoch created_at (§4)."""
    data: dict[str, Any] = {
        "id": msg.id,
        "content": msg.content,
        "account_id": conv.account.id,
        "inbox_id": conv.inbox.id,
        "conversation_id": conv.display_id,
        "message_type": MESSAGE_TYPE_INT[msg.message_type],
        "created_at": int(msg.created_at),
        "updated_at": iso_ms(msg.updated_at),
        "private": msg.private,
        "status": msg.status,
        "source_id": msg.source_id,
        "content_type": msg.content_type,
        "content_attributes": dict(msg.content_attributes),
        "sender_type": sender_type(msg.sender),
        "sender_id": msg.sender.id if msg.sender else None,
        "external_source_ids": {},
        "additional_attributes": dict(msg.additional_attributes),
        "processed_message_content": msg.content,
        "sentiment": {},
        "conversation": {
            "assignee_id": conv.assignee.id if isinstance(conv.assignee, Agent) else None,
            "unread_count": conv.unread_count(),
            "last_activity_at": int(conv.last_activity_at),
            "contact_inbox": {"source_id": conv.contact.source_id},
        },
    }
    if msg.attachments:
        data["attachments"] = [dict(a) for a in msg.attachments]
    if msg.sender is not None:
        data["sender"] = sender_push_data(msg.sender)
    return data


def api_message(conv: FakeConversation, msg: StoredMessage) -> dict[str, Any]:
    """REST format (``_message.json.jbuilder``), as in api/create_message_response.json."""
    data: dict[str, Any] = {
        "id": msg.id,
        "content": msg.content,
        "inbox_id": conv.inbox.id,
        "conversation_id": conv.display_id,
        "message_type": MESSAGE_TYPE_INT[msg.message_type],
        "content_type": msg.content_type,
        "status": msg.status,
        "content_attributes": dict(msg.content_attributes),
        "created_at": int(msg.created_at),
        "private": msg.private,
        "source_id": msg.source_id,
    }
    if msg.sender is not None:  # activity messages have no sender at all
        data["sender"] = sender_push_data(msg.sender)
    if msg.attachments:
        data["attachments"] = [dict(a) for a in msg.attachments]
    return data


def conversation_webhook_data(conv: FakeConversation) -> dict[str, Any]:
    """``Conversations::EventDataPresenter#webhook_data`` with its exact key order (§4)."""
    last = conv.last_public_message()
    contact = conv.contact
    assignee = conv.assignee
    return {
        "additional_attributes": dict(conv.additional_attributes),
        "can_reply": True,
        "channel": conv.inbox.channel_type,
        "contact_inbox": {
            "id": contact.contact_inbox_id,
            "contact_id": contact.id,
            "inbox_id": conv.inbox.id,
            "source_id": contact.source_id,
            "created_at": iso_ms(contact.created_at),
            "updated_at": iso_ms(contact.created_at),
            "hmac_verified": contact.hmac_verified,
            "pubsub_token": contact.pubsub_token,
        },
        "id": conv.display_id,
        "inbox_id": conv.inbox.id,
        "messages": [push_message(conv, last)] if last else [],
        "labels": list(conv.labels),
        "meta": {
            "sender": contact_push_data(contact),
            "assignee": sender_push_data(assignee),
            "assignee_type": sender_type(assignee),
            "team": team_data(conv.team),
            "hmac_verified": contact.hmac_verified,
        },
        "status": conv.status,
        "custom_attributes": dict(conv.custom_attributes),
        "snoozed_until": iso_ms(conv.snoozed_until) if conv.snoozed_until else None,
        "unread_count": conv.unread_count(),
        "first_reply_created_at": iso_ms(conv.first_reply_created_at),
        "priority": conv.priority,
        "waiting_since": _epoch(conv.waiting_since),
        "agent_last_seen_at": _epoch(conv.agent_last_seen_at),
        "contact_last_seen_at": 0,
        "last_activity_at": int(conv.last_activity_at),
        "timestamp": int(conv.last_activity_at),
        "created_at": int(conv.created_at),
        "updated_at": round(conv.updated_at, 6),
        "account": account_data(conv.account),
    }


def message_event(conv: FakeConversation, msg: StoredMessage, event: str = "message_created") -> dict[str, Any]:
    """``Message#webhook_data.merge(event:)``: message fields at the top level (§3)."""
    body: dict[str, Any] = {
        "account": account_data(conv.account),
        "additional_attributes": dict(msg.additional_attributes),
        "content_attributes": dict(msg.content_attributes),
        "content_type": msg.content_type,
        "content": msg.content,
        "conversation": conversation_webhook_data(conv),
        "created_at": iso_ms(msg.created_at),
        "id": msg.id,
        "inbox": inbox_data(conv.inbox),
        "message_type": msg.message_type,
        "private": msg.private,
        "sender": sender_webhook_data(msg.sender, conv.account),
        "source_id": msg.source_id,
    }
    if msg.attachments:  # the key exists only when there are attachments
        body["attachments"] = [dict(a) for a in msg.attachments]
    body["event"] = event
    return body


_NO_CHANGES = object()


def conversation_event(
    conv: FakeConversation, event: str, changed_attributes: Any = _NO_CHANGES
) -> dict[str, Any]:
    """conversation_created/updated/status_changed/opened/resolved bodies.

    ``conversation_updated`` carries a list of single-key dicts; ``conversation_status_changed``
    carries ``null`` (§4.2); the others carry no ``changed_attributes`` key at all.
    """
    body = conversation_webhook_data(conv)
    body["event"] = event
    if event == "conversation_status_changed" and changed_attributes is _NO_CHANGES:
        changed_attributes = None
    if changed_attributes is not _NO_CHANGES:
        body["changed_attributes"] = changed_attributes
    return body


def contact_event(
    contact: Contact, account: Account, event: str = "contact_created",
    changed_attributes: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    body = contact_webhook_data(contact, account)
    body["event"] = event
    if event == "contact_updated":
        body["changed_attributes"] = changed_attributes or []
    return body


def webwidget_triggered(conv: FakeConversation, event_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """§4.3: ``ContactInbox#webhook_data`` + event + event_info."""
    browser = conv.additional_attributes.get("browser", {})
    info = {"widget_language": None, "browser_language": "pt-BR", "browser": browser,
            "referer": conv.additional_attributes.get("referer"), "initiated_at": {"timestamp": _js_date(time.time())}}
    info.update(event_info or {})
    return {
        "id": conv.contact.contact_inbox_id,
        "contact": contact_webhook_data(conv.contact, conv.account),
        "inbox": inbox_data(conv.inbox),
        "account": account_data(conv.account),
        "current_conversation": conversation_webhook_data(conv),
        "source_id": conv.contact.source_id,
        "event": "webwidget_triggered",
        "event_info": info,
    }


def typing_event(conv: FakeConversation, on: bool, user: Sender, is_private: bool = False) -> dict[str, Any]:
    return {
        "event": "conversation_typing_on" if on else "conversation_typing_off",
        "user": sender_webhook_data(user, conv.account),
        "conversation": conversation_webhook_data(conv),
        "is_private": is_private,
    }


def inbox_created(inbox: Inbox, account: Account) -> dict[str, Any]:
    """``Inbox::EventDataPresenter#webhook_data``: approximated (the reference does not list its keys)."""
    return {
        "id": inbox.id,
        "name": inbox.name,
        "channel_type": inbox.channel_type,
        "avatar_url": "",
        "account": account_data(account),
        "event": "inbox_created",
    }


def _js_date(epoch: float) -> str:
    """The widget's ``initiated_at.timestamp`` is a browser ``Date.toString()``."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%a %b %d %Y %H:%M:%S GMT+0000 (Coordinated Universal Time)")


# --------------------------------------------------------------------------------------------
# The world: ids, people and conversations (no I/O)

PT_NAMES = ["Mariana Souza", "João Pereira", "Ana Beatriz Lima", "Lucas Oliveira", "Camila Rocha",
            "Rafael Almeida", "Juliana Costa", "Pedro Henrique Santos", "Fernanda Ribeiro", "Thiago Martins"]
EN_NAMES = ["Daniel Ortega", "Priya Raman", "Emily Carter", "Michael Brown", "Sofia Rossi",
            "James Wilson", "Chloe Nguyen", "Oliver Smith"]


@dataclass
class ChatwootWorld:
    """State and id counters shared by the payload builders and FakeChatwoot."""

    account: Account = field(default_factory=Account)
    bot: AgentBot = field(default_factory=lambda: AgentBot(3, "Acme Assistant"))
    rng: random.Random = field(default_factory=random.Random)
    agents: dict[int, Agent] = field(default_factory=lambda: {
        12: Agent(12, "Carlos Mendes", "carlos.mendes@acme-outdoor.example"),
        14: Agent(14, "Beatriz Nogueira", "beatriz.nogueira@acme-outdoor.example"),
    })
    teams: dict[int, Team] = field(default_factory=lambda: {
        1: Team(1, "vendas"), 2: Team(2, "suporte"), 3: Team(3, "financeiro")})
    conversations: dict[int, FakeConversation] = field(default_factory=dict)
    next_conversation_id: int = 1093
    next_contact_id: int = 4182
    next_contact_inbox_id: int = 5120
    next_message_id: int = 90000
    next_attachment_id: int = 3300

    def _take(self, counter: str) -> int:
        value = getattr(self, counter)
        setattr(self, counter, value + 1)
        return value

    def new_message_id(self) -> int:
        return self._take("next_message_id")

    def agent(self, user_id: int) -> Agent:
        if user_id not in self.agents:
            self.agents[user_id] = Agent(user_id, f"Agent {user_id}", f"agent{user_id}@acme-outdoor.example")
        return self.agents[user_id]

    def team(self, team_id: int) -> Team:
        return self.teams.setdefault(team_id, Team(team_id, f"team-{team_id}"))

    def inbox(self, channel: str, inbox_id: int | None = None, instagram_via_page: bool = False) -> Inbox:
        traits = traits_for(channel, instagram_via_page)
        return Inbox(inbox_id or traits.inbox_id, traits.inbox_name, traits.channel_type)

    def new_contact(self, channel: str, *, name: str | None = None, instagram_via_page: bool = False) -> Contact:
        traits = traits_for(channel, instagram_via_page)
        rng = self.rng
        name = name or rng.choice(PT_NAMES if channel in ("whatsapp", "sms") else PT_NAMES + EN_NAMES)
        contact = Contact(id=self._take("next_contact_id"), name=name, source_id="",
                          contact_inbox_id=self._take("next_contact_inbox_id"),
                          pubsub_token=_alnum(rng, 24))
        slug = name.lower().split()[0] + "." + name.lower().split()[-1]
        phone = "55119" + "".join(rng.choice(string.digits) for _ in range(8))
        address = {
            "phone_digits": phone, "phone": "+" + phone, "psid": _digits(rng, 16), "igsid": _digits(rng, 17),
            "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "email": f"{slug}@example.com",
            "telegram": _digits(rng, 10),
        }[traits.contact_address]
        contact.source_id = address
        if traits.contact_has_phone:
            contact.phone_number = "+" + phone
        if traits.contact_has_email:
            contact.email = f"{slug}@example.com"
        if traits.instagram_profile:
            contact.additional_attributes = {"social_profiles": {"instagram": slug.replace(".", "_")},
                                             "social_instagram_user_name": slug.replace(".", "_"),
                                             "social_instagram_follower_count": rng.randint(40, 4000),
                                             "social_instagram_is_verified_user": False}
        if channel == "webwidget":  # a visitor identified through the SDK (README scenario)
            contact.identifier = f"cus_{rng.randint(1000, 9999)}"
            contact.hmac_verified = True
            contact.additional_attributes = {"city": "São Paulo", "country": "Brazil", "country_code": "BR",
                                             "created_at_ip": "203.0.113.24"}
        return contact

    def open_conversation(
        self, channel: str = "whatsapp", *, inbox_id: int | None = None, contact_name: str | None = None,
        status: str = "pending", instagram_via_page: bool = False, labels: tuple[str, ...] | list[str] = (),
    ) -> FakeConversation:
        traits = traits_for(channel, instagram_via_page)
        conv = FakeConversation(
            display_id=self._take("next_conversation_id"), channel=channel,
            inbox=self.inbox(channel, inbox_id, instagram_via_page),
            contact=self.new_contact(channel, name=contact_name, instagram_via_page=instagram_via_page),
            account=self.account, status=status, labels=list(labels), instagram_via_page=instagram_via_page,
            additional_attributes=self._conversation_attributes(traits),
        )
        self.conversations[conv.display_id] = conv
        return conv

    def _conversation_attributes(self, traits: ChannelTraits) -> dict[str, Any]:
        if traits.conversation_attributes == "browser":
            return {"browser_language": "pt-BR",
                    "browser": {"device_name": "Unknown", "browser_name": "Chrome", "platform_name": "Windows",
                                "browser_version": "126.0.6478.127", "platform_version": "10.0"},
                    "initiated_at": {"timestamp": _js_date(time.time())},
                    "referer": "https://www.acme-outdoor.example/produtos/barraca-trail-2p"}
        if traits.conversation_attributes == "instagram_dm":
            return {"type": "instagram_direct_message"}
        if traits.conversation_attributes == "email":
            return {"mail_subject": "Pedido", "source": "email", "in_reply_to": None}
        return {}

    # -- messages ------------------------------------------------------------------------------

    def add_message(self, conv: FakeConversation, msg: StoredMessage) -> StoredMessage:
        conv.messages.append(msg)
        conv.updated_at = msg.created_at
        if msg.message_type == "incoming" and not conv.waiting_since:
            conv.waiting_since = msg.created_at
        if msg.message_type == "outgoing" and not msg.private and msg.sender is not None:
            conv.waiting_since = None
            if isinstance(msg.sender, Agent | AgentBot) and conv.first_reply_created_at is None:
                conv.first_reply_created_at = msg.created_at
        return msg

    def customer_message(
        self, conv: FakeConversation, text: str | None, attachments: list[str | dict[str, Any]] | None = None,
    ) -> StoredMessage:
        """An incoming message with a channel-native id and the channel's content_attributes."""
        traits = conv.traits
        msg = StoredMessage(id=self.new_message_id(), conversation_id=conv.display_id, content=text,
                            message_type="incoming", sender=conv.contact,
                            source_id=channel_message_id(traits.message_ids, self.rng),
                            content_attributes=dict(traits.content_attributes))
        for spec in attachments or []:
            spec = {"file_type": spec} if isinstance(spec, str) else dict(spec)
            msg.attachments.append(make_attachment(
                spec.pop("file_type"), attachment_id=self._take("next_attachment_id"), message_id=msg.id,
                account_id=conv.account.id, rng=self.rng, external_cdn=traits.message_ids == "instagram", **spec))
        return self.add_message(conv, msg)

    def outgoing_message(
        self, conv: FakeConversation, text: str | None, *, sender: Sender, private: bool = False,
        content_attributes: dict[str, Any] | None = None, source_id: str | None = None,
        message_type: str = "outgoing", content_type: str = "text", via_api: bool = False,
    ) -> StoredMessage:
        msg = StoredMessage(id=self.new_message_id(), conversation_id=conv.display_id, content=text,
                            message_type=message_type, sender=sender, private=private, source_id=source_id,
                            content_type=content_type, content_attributes=dict(content_attributes or {}),
                            via_api=via_api)
        return self.add_message(conv, msg)

    def native_echo(self, conv: FakeConversation, text: str) -> StoredMessage:
        """Typed in the WhatsApp/Facebook/Instagram app itself: outgoing, sender null, external_echo."""
        return self.outgoing_message(conv, text, sender=None, content_attributes={"external_echo": True},
                                     source_id=channel_message_id(conv.traits.message_ids, self.rng))

    def template_message(self, conv: FakeConversation, text: str) -> StoredMessage:
        return self.outgoing_message(conv, text, sender=None, message_type="template")

    def activity_message(self, conv: FakeConversation, text: str) -> StoredMessage:
        return self.outgoing_message(conv, text, sender=None, message_type="activity")


def sample_conversation(
    channel: str = "whatsapp", *, instagram_via_page: bool = False, seed: int = 7, status: str = "pending",
) -> tuple[ChatwootWorld, FakeConversation]:
    """A deterministic world with one conversation: convenient for shape tests and fixtures."""
    world = ChatwootWorld(rng=random.Random(seed))
    return world, world.open_conversation(channel, instagram_via_page=instagram_via_page, status=status)
