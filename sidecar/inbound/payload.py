"""Provides the channel-independent view of a Chatwoot webhook body.

Chatwoot's payloads differ by event and by channel (and real deliveries vary more than
the docs). Everything here is defensive: a wrong type or a missing key gives ``None`` or a
default, never an exception, so bad input can be ignored with a reason instead of a 500.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

# conversation.channel (inbox.channel_type) -> the channel names used by routing rules.
CHANNEL_NAMES = {
    "Channel::Whatsapp": "whatsapp",
    "Channel::FacebookPage": "facebook",
    "Channel::Instagram": "instagram",
    "Channel::WebWidget": "webwidget",
    "Channel::Api": "api",
    "Channel::Email": "email",
    "Channel::Telegram": "telegram",
    "Channel::TwilioSms": "sms",
    "Channel::Sms": "sms",
    "Channel::Line": "line",
    "Channel::TwitterProfile": "twitter",
    "Channel::Tiktok": "tiktok",
}
MESSAGE_EVENTS = ("message_created", "message_updated")
CONVERSATION_EVENTS = (
    "conversation_created",
    "conversation_updated",
    "conversation_status_changed",
    "conversation_opened",
    "conversation_resolved",
)
KNOWN_EVENTS = (
    *MESSAGE_EVENTS,
    *CONVERSATION_EVENTS,
    "contact_created",
    "contact_updated",
    "webwidget_triggered",
    "inbox_created",
    "inbox_updated",
    "conversation_typing_on",
    "conversation_typing_off",
)
_MESSAGE_TYPE_INTS = {0: "incoming", 1: "outgoing", 2: "activity", 3: "template"}


def parse_json(body: bytes | str) -> Any:
    """A webhook body as JSON: the compiled parser first, the standard one for what it refuses
    (integers beyond 64 bits, NaN), so the accepted input is the standard library's. Raises
    ValueError (or RecursionError for absurd nesting) when it is not JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else None
    if isinstance(value, str) and value.isdigit() and len(value) < 19:
        return int(value)
    return None


def _str(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _epoch(value: Any) -> float | None:
    """Chatwoot mixes ISO strings (message created_at) and epoch numbers (conversation)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def content_hash(content: str) -> str:
    """A short digest used to recognise the sidecar's own messages when they come back."""
    return hashlib.sha256(content.strip().encode("utf-8", "replace")).hexdigest()[:32]


def channel_name(channel_type: str, additional_attributes: dict[str, Any]) -> str:
    # Instagram reached through a Facebook page arrives on Channel::FacebookPage.
    if additional_attributes.get("type") == "instagram_direct_message":
        return "instagram"
    return CHANNEL_NAMES.get(channel_type, channel_type.removeprefix("Channel::").lower() or "unknown")


@dataclass(frozen=True, slots=True)
class Attachment:
    """One attachment with what a crew needs to fetch or describe it."""

    id: int | None
    file_type: str
    url: str
    thumb_url: str
    content_type: str
    extension: str
    file_size: int | None
    transcript: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "file_type": self.file_type,
            "url": self.url,
            "thumb_url": self.thumb_url,
            "content_type": self.content_type,
            "extension": self.extension,
            "file_size": self.file_size,
            "transcript": self.transcript,
        }


@dataclass(frozen=True, slots=True)
class Conversation:
    """What a delivery says about its conversation."""

    account_id: int | None
    conversation_id: int | None
    inbox_id: int | None
    inbox_name: str
    channel: str
    channel_type: str
    status: str
    assignee_type: str | None
    assignee_id: int | None
    team_id: int | None
    labels: tuple[str, ...]
    can_reply: bool
    contact: dict[str, Any]
    last_activity_at: float | None
    updated_at: float | None = None
    """Chatwoot's updated_at (an epoch float; every status change moves it)."""
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    """changed_attributes as {attribute: (previous, current)}."""


@dataclass(frozen=True, slots=True)
class Message:
    """One message, whatever the channel."""

    id: int | None
    message_type: str
    """``incoming``, ``outgoing``, ``template`` or ``activity``."""
    private: bool
    content: str
    content_type: str
    sender_kind: str
    """``contact``, ``user``, ``agent_bot``, ``captain_assistant`` or ``none``."""
    sender_id: int | None
    sender_name: str
    external_echo: bool
    attachments: tuple[Attachment, ...]
    created_at: float | None
    csat_rating: int | None = None
    """A CSAT survey's rating (1-5), once the customer answered it (``input_csat`` messages)."""

    @property
    def content_hash(self) -> str:
        return content_hash(self.content)


@dataclass(frozen=True, slots=True)
class Inbound:
    """A normalised delivery."""

    event: str
    conversation: Conversation | None
    message: Message | None


def _contact(meta_sender: dict[str, Any], fallback: dict[str, Any]) -> dict[str, Any]:
    src = meta_sender or fallback
    return {
        "id": _int(src.get("id")),
        "name": _str(src.get("name")),
        "phone_number": _str(src.get("phone_number")) or None,
        "email": _str(src.get("email")) or None,
        "identifier": _str(src.get("identifier")) or None,
    }


def _changed(raw: Any) -> dict[str, tuple[Any, Any]]:
    changes: dict[str, tuple[Any, Any]] = {}
    if isinstance(raw, list):
        for item in raw:
            for key, value in _dict(item).items():
                value = _dict(value)
                changes[str(key)] = (value.get("previous_value"), value.get("current_value"))
    return changes


def parse_conversation(
    conv: dict[str, Any], *, account: dict[str, Any], inbox: dict[str, Any],
    sender: dict[str, Any] | None = None, changed: Any = None,
) -> Conversation | None:
    if not conv:
        return None
    meta = _dict(conv.get("meta"))
    assignee = _dict(meta.get("assignee"))
    team = _dict(meta.get("team"))
    additional = _dict(conv.get("additional_attributes"))
    channel_type = _str(conv.get("channel"))
    labels = conv.get("labels")
    account_id = _int(account.get("id")) or _int(_dict(conv.get("account")).get("id"))
    return Conversation(
        account_id=account_id,
        conversation_id=_int(conv.get("id")),
        inbox_id=_int(conv.get("inbox_id")) or _int(inbox.get("id")),
        inbox_name=_str(inbox.get("name")),
        channel=channel_name(channel_type, additional),
        channel_type=channel_type,
        status=_str(conv.get("status")),
        assignee_type=_str(meta.get("assignee_type")) or None,
        assignee_id=_int(assignee.get("id")),
        team_id=_int(team.get("id")),
        labels=tuple(x for x in labels if isinstance(x, str)) if isinstance(labels, list) else (),
        can_reply=conv.get("can_reply") is not False,
        contact=_contact(_dict(meta.get("sender")), sender or {}),
        last_activity_at=_epoch(conv.get("last_activity_at")),
        updated_at=_epoch(conv.get("updated_at")),
        changed=_changed(changed),
    )


def _attachments(raw: Any) -> tuple[Attachment, ...]:
    if not isinstance(raw, list):
        return ()
    out = []
    for item in raw:
        item = _dict(item)
        if not item:
            continue
        out.append(Attachment(
            id=_int(item.get("id")),
            file_type=_str(item.get("file_type"), "file"),
            url=_str(item.get("data_url")),
            thumb_url=_str(item.get("thumb_url")),
            content_type=_str(item.get("content_type")),
            extension=_str(item.get("extension")),
            file_size=_int(item.get("file_size")),
            transcript=_str(item.get("transcribed_text")),
        ))
    return tuple(out)


def _sender_kind(sender: dict[str, Any], message_type: str) -> str:
    if not sender:
        return "none"
    kind = _str(sender.get("type"))
    if kind in ("user", "agent_bot", "captain_assistant", "contact"):
        return kind
    # Contacts carry no ``type`` at the top level of message webhooks.
    return "contact" if message_type == "incoming" else "unknown"


def parse_message(body: dict[str, Any]) -> Message:
    raw_type = body.get("message_type")
    message_type = _MESSAGE_TYPE_INTS.get(raw_type, "") if isinstance(raw_type, int) else _str(raw_type)
    sender = _dict(body.get("sender"))
    attrs = _dict(body.get("content_attributes"))
    return Message(
        id=_int(body.get("id")),
        message_type=message_type,
        private=body.get("private") is True,
        content=_str(body.get("content")),
        content_type=_str(body.get("content_type"), "text"),
        sender_kind=_sender_kind(sender, message_type),
        sender_id=_int(sender.get("id")),
        sender_name=_str(sender.get("name")),
        external_echo=attrs.get("external_echo") is True,
        attachments=_attachments(body.get("attachments")),
        created_at=_epoch(body.get("created_at")),
        csat_rating=_csat_rating(attrs),
    )


def _csat_rating(attrs: dict[str, Any]) -> int | None:
    """Chatwoot stores a survey answer in ``content_attributes.submitted_values.csat_survey_response``
    and sends the survey message again as ``message_updated``."""
    submitted = _dict(attrs.get("submitted_values"))
    response = _dict(submitted.get("csat_survey_response"))
    rating = _int(response.get("rating"))
    return rating if rating is not None and 1 <= rating <= 5 else None


def normalize(body: dict[str, Any]) -> Inbound:
    """Turns any JSON object into an Inbound; unknown shapes simply carry less."""
    event = _str(body.get("event"))
    account = _dict(body.get("account"))
    if event in MESSAGE_EVENTS:
        conv = parse_conversation(
            _dict(body.get("conversation")), account=account, inbox=_dict(body.get("inbox")),
            sender=_dict(body.get("sender")) if body.get("message_type") == "incoming" else None,
        )
        return Inbound(event=event, conversation=conv, message=parse_message(body))
    if event in CONVERSATION_EVENTS:
        conv = parse_conversation(body, account=account, inbox={}, changed=body.get("changed_attributes"))
        return Inbound(event=event, conversation=conv, message=None)
    if event in ("conversation_typing_on", "conversation_typing_off"):
        conv = parse_conversation(_dict(body.get("conversation")), account=account, inbox={})
        return Inbound(event=event, conversation=conv, message=None)
    return Inbound(event=event, conversation=None, message=None)


@dataclass(frozen=True, slots=True)
class Peek:
    """The few facts the webhook's answer and its dedup key need, read without building the
    whole ``Inbound`` (that happens once, when the journaled delivery is applied). Every value
    follows the same rules as :func:`normalize`."""

    event: str
    account_id: int | None
    conversation_id: int | None
    message_id: int | None
    message_type: str
    private: bool
    inbox_id: int | None
    empty: bool
    """No text and no attachment."""

    @property
    def is_message(self) -> bool:
        return self.event in MESSAGE_EVENTS and self.conversation_id is not None

    @property
    def dedup_key(self) -> str | None:
        """The same message delivered under another delivery id must be handled once."""
        if self.event == "message_created" and self.message_id is not None:
            return f"message_created:{self.account_id}:{self.message_id}"
        return None


def peek(body: dict[str, Any]) -> Peek:
    event = _str(body.get("event"))
    account = _dict(body.get("account"))
    if event in MESSAGE_EVENTS:
        conv = _dict(body.get("conversation"))
        raw_type = body.get("message_type")
        message_type = _MESSAGE_TYPE_INTS.get(raw_type, "") if isinstance(raw_type, int) else _str(raw_type)
        attachments = body.get("attachments")
        return Peek(
            event=event,
            account_id=(_int(account.get("id")) or _int(_dict(conv.get("account")).get("id"))) if conv else None,
            conversation_id=_int(conv.get("id")) if conv else None,
            message_id=_int(body.get("id")),
            message_type=message_type,
            private=body.get("private") is True,
            inbox_id=(_int(conv.get("inbox_id")) or _int(_dict(body.get("inbox")).get("id"))) if conv else None,
            empty=not _str(body.get("content")).strip() and not (
                isinstance(attachments, list) and any(_dict(a) for a in attachments)),
        )
    conv = body if event in CONVERSATION_EVENTS else _dict(body.get("conversation"))
    known = event in CONVERSATION_EVENTS or event in ("conversation_typing_on", "conversation_typing_off")
    return Peek(
        event=event,
        account_id=(_int(account.get("id")) or _int(_dict(conv.get("account")).get("id"))) if known and conv else None,
        conversation_id=_int(conv.get("id")) if known and conv else None,
        message_id=None, message_type="", private=False, inbox_id=None, empty=True,
    )


def event_label(event: str) -> str:
    """Event names come from the sender: unknown ones are folded into one label, so a
    hostile body can neither blow up metric cardinality nor write a huge log field."""
    if event in KNOWN_EVENTS:
        return event
    return "unknown" if not event else "other"


_KNOWN_MESSAGE_TYPES = frozenset({"incoming", "outgoing", "activity", "template"})


def message_type_label(message_type: str) -> str:
    """The same for a message's type (any string may arrive)."""
    return message_type if message_type in _KNOWN_MESSAGE_TYPES else ("unknown" if not message_type else "other")
