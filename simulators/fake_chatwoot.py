"""A fake Chatwoot: signed webhooks out, the REST subset the sidecar uses in, on 127.0.0.1.

It behaves like the real one where the sidecar can tell the difference (reference/chatwoot.md §5-§8):
bot tokens cannot list messages, a bot's pending->open is a hand-off, the bot's own messages come
back as webhooks (possibly before the create call has answered), and it can fail, stall or drop
the connection after storing a message, on demand.

Over 400 lines on purpose: FakeChatwoot is one aiohttp app over one set of conversations. The
webhooks it sends, its REST handlers, the fault knobs and the recording all act on that state,
and the tests drive and read it through this one object.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
from aiohttp import web

from simulators.loopback import serve, shut_down

from .payloads import (
    Account,
    Agent,
    AgentBot,
    ChatwootWorld,
    FakeConversation,
    StoredMessage,
    api_message,
    changed,
    channel_message_id,
    contact_push_data,
    conversation_event,
    conversation_webhook_data,
    message_event,
    sender_push_data,
)
from .signing import chatwoot_json, webhook_headers

__all__ = ["FakeChatwoot", "FakeConversation", "RecordedRequest", "WebhookResult"]

API_PREFIX = "/api/v1/accounts/{account_id}/conversations/{conversation_id}"
STATUSES = ("open", "resolved", "pending", "snoozed")
BOT_FORBIDDEN = {"error": "Access to this endpoint is not authorized for bots"}
NOT_FOUND = {"error": "Resource could not be found"}
MESSAGES_PER_MINUTE_LIMIT = 200  # Chatwoot's CONVERSATION_MESSAGE_PER_MINUTE_LIMIT default

Result = tuple[int, dict[str, Any] | None]
WebhookResult = tuple[str, str | None, int, Any]  # (delivery_id, event, status, parsed body)


@dataclass
class RecordedRequest:
    method: str
    path: str
    json: Any
    headers: dict[str, str]
    at: float
    query: dict[str, str] = field(default_factory=dict)


@dataclass
class _Fault:
    suffix: str
    remaining: int
    status: int | None = None
    retry_after: float | None = None
    delay: float | None = None
    method: str | None = None

    def matches(self, request: web.Request) -> bool:
        path = request.path.rstrip("/")
        return (self.remaining > 0 and (path.endswith("/" + self.suffix.strip("/")) or not self.suffix)
                and (self.method is None or self.method.upper() == request.method))


class FakeChatwoot:
    """Fake Chatwoot server. ``async with FakeChatwoot(...) as cw:`` or ``await cw.start()``."""

    def __init__(
        self, *, token: str = "cw-test-token", token_kind: Literal["agent_bot", "user"] = "agent_bot",
        bot_id: int = 3, bot_user_id: int = 99, account_id: int = 7, webhook_url: str | None = None,
        webhook_secret: str | None = None, echo: bool = True, echo_before_response: bool = False,
        handoff_on_bot_failure: bool = False, legacy_bot_events: bool = False, webhook_timeout: float = 5.0,
    ) -> None:
        self.token = token
        self.token_kind = token_kind
        self.bot_id = bot_id
        self.bot_user_id = bot_user_id
        self.account_id = account_id
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.echo = echo
        self.echo_before_response = echo_before_response
        # Chatwoot >=4.7 opens a pending conversation when an agent-bot delivery of message_* fails.
        self.handoff_on_bot_failure = handoff_on_bot_failure
        # conversation_opened/_resolved are agent-bot-only legacy events (§2).
        self.legacy_bot_events = legacy_bot_events
        self.webhook_timeout = webhook_timeout
        self.world = ChatwootWorld(account=Account(account_id), bot=AgentBot(bot_id, "Acme Assistant"))
        self.world.agents[bot_user_id] = Agent(bot_user_id, "Acme Automation", "automation@acme-outdoor.example")
        self.url = ""
        self.requests: list[RecordedRequest] = []
        self.webhook_results: list[WebhookResult] = []
        self.webhook_errors: list[tuple[str, str]] = []  # (delivery_id, error) for unreachable receivers
        self.defects: list[str] = []  # protocol mistakes the sidecar made (e.g. source_id on create)
        self.handoffs: list[int] = []  # conversations handed off by a bot token (pending -> open)
        self._assignments: dict[int, list[dict[str, Any]]] = {}
        self._typing: dict[int, list[str]] = {}
        self._faults: list[_Fault] = []
        self._drops = 0
        self._cond = asyncio.Condition()
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    # ---------------------------------------------------------------------------------- lifecycle

    async def start(self) -> FakeChatwoot:
        app = web.Application(middlewares=[self._middleware], client_max_size=4 * 1024 * 1024)
        app.add_routes([
            web.get(API_PREFIX, self._show),
            web.get(API_PREFIX + "/messages", self._list_messages),
            web.post(API_PREFIX + "/messages", self._create_message),
            web.post(API_PREFIX + "/toggle_status", self._toggle_status),
            web.post(API_PREFIX + "/assignments", self._assign),
            web.get(API_PREFIX + "/labels", self._get_labels),
            web.post(API_PREFIX + "/labels", self._set_labels),
            web.post(API_PREFIX + "/toggle_typing_status", self._toggle_typing),
            web.post(API_PREFIX + "/toggle_priority", self._toggle_priority),
            web.post(API_PREFIX + "/custom_attributes", self._custom_attributes),
            web.get("/api/v1/profile", self._profile),
        ])
        self._runner, self.url = await serve(app)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.webhook_timeout))
        return self

    async def stop(self) -> None:
        self._stopping.set()  # releases delay_next waits so the runner can shut down promptly
        await shut_down(self._tasks, self._session, self._runner)

    async def __aenter__(self) -> FakeChatwoot:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---------------------------------------------------------------------------------- knobs

    def fail_next(self, path_suffix: str, times: int, status: int, retry_after: float | None = None,
                  *, method: str | None = None) -> None:
        """The next ``times`` API calls whose path ends with ``path_suffix`` answer ``status``."""
        self._faults.append(_Fault(path_suffix, times, status=status, retry_after=retry_after, method=method))

    def delay_next(self, path_suffix: str, seconds: float, times: int = 1) -> None:
        """Stall the next matching call(s) by ``seconds`` before handling them (a slow Chatwoot)."""
        self._faults.append(_Fault(path_suffix, times, delay=seconds))

    def drop_after_store_next(self, times: int = 1) -> None:
        """The next message creates are stored (and echoed) but the TCP connection is cut, no answer."""
        self._drops += times

    # ---------------------------------------------------------------------------------- registry

    def open_conversation(
        self, channel: str = "whatsapp", *, inbox_id: int | None = None, contact_name: str | None = None,
        status: str = "pending", instagram_via_page: bool = False, labels: tuple[str, ...] | list[str] = (),
    ) -> FakeConversation:
        return self.world.open_conversation(channel, inbox_id=inbox_id, contact_name=contact_name, status=status,
                                            instagram_via_page=instagram_via_page, labels=labels)

    def conversation(self, conv_id: int) -> FakeConversation:
        return self.world.conversations[conv_id]

    # ---------------------------------------------------------------------------------- webhooks out

    async def customer_says(self, conv: FakeConversation, text: str | None, *,
                            attachments: list[str | dict[str, Any]] | None = None,
                            delivery_id: str | None = None) -> Result:
        """An incoming customer message; reopens a resolved conversation as pending (bot inbox)."""
        if conv.status in ("resolved", "snoozed"):
            # Message#reopen_resolved_conversation: pending in a bot inbox; a snoozed one opens.
            await self._change_status(conv, "pending" if conv.status == "resolved" else "open")
        msg = self.world.customer_message(conv, text, attachments)
        return await self._send_message_event(conv, msg, "message_created", delivery_id)

    async def agent_says(self, conv: FakeConversation, text: str, *, private: bool = False,
                         user_id: int = 12) -> Result:
        agent = self.world.agent(user_id)
        if not private and conv.assignee is None:
            conv.assignee = agent  # what the reference's "human agent answers" scenario shows
        msg = self.world.outgoing_message(conv, text, sender=agent, private=private)
        return await self._send_message_event(conv, msg, "message_created")

    async def native_echo(self, conv: FakeConversation, text: str) -> Result:
        msg = self.world.native_echo(conv, text)
        return await self._send_message_event(conv, msg, "message_created")

    async def template_message(self, conv: FakeConversation, text: str) -> Result:
        msg = self.world.template_message(conv, text)
        return await self._send_message_event(conv, msg, "message_created")

    async def update_message(self, conv: FakeConversation, message_id: int) -> Result:
        """message_updated, as when the channel accepted an outgoing message and its id is written back."""
        msg = next(m for m in conv.messages if m.id == message_id)
        if msg.message_type == "outgoing" and msg.source_id is None:
            msg.source_id = channel_message_id(conv.traits.message_ids, self.world.rng)
            msg.status = "delivered"
        msg.updated_at = time.time()
        return await self._send_message_event(conv, msg, "message_updated")

    async def csat_survey(self, conv: FakeConversation) -> int:
        """The CSAT survey Chatwoot posts when a conversation of an inbox with CSAT is resolved
        (a template message, content_type ``input_csat``); returns its message id."""
        msg = self.world.outgoing_message(conv, "Please rate the conversation", sender=None,
                                          message_type="template", content_type="input_csat")
        await self._send_message_event(conv, msg, "message_created")
        return msg.id

    async def csat_response(self, conv: FakeConversation, survey_id: int, rating: int,
                            feedback: str = "") -> Result:
        """The customer answered the survey: Chatwoot writes the answer into the survey message's
        ``content_attributes.submitted_values`` and sends it again as ``message_updated``."""
        msg = next(m for m in conv.messages if m.id == survey_id)
        msg.content_attributes["submitted_values"] = {
            "csat_survey_response": {"rating": rating, "feedback_message": feedback}}
        msg.updated_at = time.time()
        return await self._send_message_event(conv, msg, "message_updated")

    async def set_status(self, conv: FakeConversation, status: str) -> Result:
        """An agent changes the status: conversation_updated (with the change) then status_changed."""
        return await self._change_status(conv, status)

    async def resolve(self, conv: FakeConversation) -> Result:
        return await self.set_status(conv, "resolved")

    async def assign(self, conv: FakeConversation, user_id: int | None) -> Result:
        previous = conv.assignee.id if isinstance(conv.assignee, Agent) else None
        conv.assignee = self.world.agent(user_id) if user_id is not None else None
        conv.updated_at = time.time()
        return await self.send_event(conversation_event(
            conv, "conversation_updated", [changed("assignee_id", previous, user_id)]))

    async def announce(self, conv: FakeConversation) -> Result:
        """conversation_created for a conversation opened with ``open_conversation``."""
        return await self.send_event(conversation_event(conv, "conversation_created"))

    async def send_event(
        self, payload: Any, *, delivery_id: str | None = None, secret: str | None = None,
        timestamp: int | None = None, raw_body: bytes | None = None, headers: dict[str, str | None] | None = None,
    ) -> Result:
        """Deliver anything, signed like Chatwoot. A header set to None in ``headers`` is removed."""
        if not self.webhook_url:
            raise RuntimeError("FakeChatwoot.webhook_url is not set")
        body = raw_body if raw_body is not None else chatwoot_json(payload)
        delivery = delivery_id or str(uuid.uuid4())
        stamp = timestamp if timestamp is not None else int(time.time())
        sent = webhook_headers(body, delivery_id=delivery, secret=secret or self.webhook_secret, timestamp=stamp)
        for name, value in (headers or {}).items():
            sent = {k: v for k, v in sent.items() if k.lower() != name.lower()}
            if value is not None:
                sent[name] = value
        event = payload.get("event") if isinstance(payload, dict) else None
        status, parsed = await self._post_webhook(body, sent, delivery)
        self.webhook_results.append((delivery, event, status, parsed))
        await self._notify()
        return status, parsed

    async def _post_webhook(self, body: bytes, headers: dict[str, str], delivery: str) -> Result:
        assert self._session is not None, "FakeChatwoot is not started"
        try:
            async with self._session.post(self.webhook_url or "", data=body, headers=headers) as resp:
                raw = await resp.read()
                try:
                    return resp.status, json.loads(raw) if raw else None
                except ValueError:
                    return resp.status, None
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Chatwoot only logs an unreachable receiver; status 0 stands for "no HTTP answer".
            self.webhook_errors.append((delivery, repr(exc)))
            return 0, None

    async def _send_message_event(self, conv: FakeConversation, msg: StoredMessage, event: str,
                                  delivery_id: str | None = None) -> Result:
        was_pending = conv.status == "pending"
        status, parsed = await self.send_event(message_event(conv, msg, event), delivery_id=delivery_id)
        if self.handoff_on_bot_failure and was_pending and not 200 <= status < 300:
            self.world.activity_message(conv, "Conversation was marked open by system due to an error with the agent bot.")
            await self._change_status(conv, "open")
        return status, parsed

    async def _change_status(self, conv: FakeConversation, status: str) -> Result:
        return await self._send_all(self._status_change(conv, status))

    def _status_change(self, conv: FakeConversation, status: str, *, handoff: bool = False) -> list[dict[str, Any]]:
        """Apply a status change now and return the webhooks Chatwoot would emit for it, in order."""
        previous = conv.status
        events: list[dict[str, Any]] = []
        if handoff and not conv.waiting_since:  # bot_handoff! sets waiting_since before open!
            conv.waiting_since = time.time()
            events.append(conversation_event(
                conv, "conversation_updated", [changed("waiting_since", None, int(conv.waiting_since))]))
        conv.status = status
        conv.updated_at = time.time()
        if status != "snoozed":
            conv.snoozed_until = None
        if previous == status:
            return events
        events.append(conversation_event(conv, "conversation_updated", [changed("status", previous, status)]))
        events.append(conversation_event(conv, "conversation_status_changed"))
        if self.legacy_bot_events and status in ("open", "resolved"):
            events.append(conversation_event(conv, "conversation_opened" if status == "open" else "conversation_resolved"))
        return events

    async def _send_all(self, payloads: list[dict[str, Any]]) -> Result:
        """Deliver in order; the last answer is returned, ``(0, None)`` when there was nothing to send."""
        result: Result = (0, None)
        for payload in payloads:
            result = await self.send_event(payload)
        return result

    async def _publish(self, payloads: list[dict[str, Any]]) -> None:
        """Webhooks caused by an API call: after the HTTP answer, or before it when so configured."""
        if self._echoing and payloads:
            if self.echo_before_response:
                await self._send_all(payloads)
            else:
                self._emit_later(lambda: self._send_all(payloads))
        await self._notify()

    def _emit_later(self, make: Callable[[], Awaitable[Any]]) -> None:
        task = asyncio.ensure_future(make())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def echoes_delivered(self) -> None:
        """Waits until every webhook the fake emitted after an API answer has been answered (a
        test comparing the sidecar's figures wants none of them still on the way)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    @property
    def _echoing(self) -> bool:
        return self.echo and bool(self.webhook_url)

    # ---------------------------------------------------------------------------------- recording

    def messages_in(self, conv_id: int) -> list[dict[str, Any]]:
        return [m.record() for m in self.conversation(conv_id).messages]

    def replies(self, conv_id: int) -> list[str | None]:
        """Contents of public outgoing messages posted through the API (the sidecar's replies)."""
        return [m.content for m in self.conversation(conv_id).messages
                if m.via_api and m.message_type == "outgoing" and not m.private]

    def notes(self, conv_id: int) -> list[str | None]:
        return [m.content for m in self.conversation(conv_id).messages if m.via_api and m.private]

    def status_of(self, conv_id: int) -> str:
        return self.conversation(conv_id).status

    def labels_of(self, conv_id: int) -> list[str]:
        return list(self.conversation(conv_id).labels)

    def assignments(self, conv_id: int) -> list[dict[str, Any]]:
        """Bodies posted to ``/assignments`` for this conversation, in order."""
        return list(self._assignments.get(conv_id, []))

    def typing(self, conv_id: int) -> list[str]:
        """``typing_status`` values posted for this conversation, in order ("on"/"off")."""
        return list(self._typing.get(conv_id, []))

    def calls(self, path_suffix: str, method: str = "POST") -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method and r.path.rstrip("/").endswith("/" + path_suffix)]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate()`` holds; re-checked on every API request and webhook answer."""
        async with self._cond:
            try:
                await asyncio.wait_for(self._cond.wait_for(predicate), timeout)
            except TimeoutError:
                last_req = f"{self.requests[-1].method} {self.requests[-1].path}" if self.requests else "none"
                last_hook = self.webhook_results[-1][1:3] if self.webhook_results else "none"
                raise TimeoutError(
                    f"FakeChatwoot.wait_for: still false after {timeout}s; {len(self.requests)} API requests "
                    f"(last {last_req}), {len(self.webhook_results)} webhook answers (last {last_hook}), "
                    f"defects={self.defects}") from None

    async def _notify(self) -> None:
        async with self._cond:
            self._cond.notify_all()

    # ---------------------------------------------------------------------------------- HTTP plumbing

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        raw = await request.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        self.requests.append(RecordedRequest(request.method, request.path, parsed, dict(request.headers),
                                             time.time(), dict(request.query)))
        await self._notify()
        delay = self._take_fault(request, "delay")
        if delay and delay.delay:
            with contextlib.suppress(TimeoutError):  # stop() cuts a stall short
                await asyncio.wait_for(self._stopping.wait(), delay.delay)
        fault = self._take_fault(request, "status")
        if fault and fault.status:
            return self._fault_response(fault)
        denied = self._check_auth(request)
        if denied is not None:
            return denied
        return await handler(request)

    def _take_fault(self, request: web.Request, kind: Literal["delay", "status"]) -> _Fault | None:
        for fault in self._faults:
            if fault.matches(request) and (fault.delay if kind == "delay" else fault.status):
                fault.remaining -= 1
                return fault
        return None

    @staticmethod
    def _fault_response(fault: _Fault) -> web.Response:
        headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
        if fault.status == 429:  # Rack::Attack's default throttled body
            return web.Response(status=429, text="Retry later", headers=headers)
        return web.json_response({"error": "simulated failure"}, status=fault.status or 500, headers=headers)

    def _check_auth(self, request: web.Request) -> web.Response | None:
        token = request.headers.get("api_access_token") or request.headers.get("Api-Access-Token")
        if token != self.token:
            return web.json_response({"error": "Invalid Access Token"}, status=401)
        account = request.match_info.get("account_id")
        if account is not None and account != str(self.account_id):
            error = ("Bot is not authorized to access this account" if self.token_kind == "agent_bot"
                     else "You are not authorized to do this action")
            return web.json_response({"error": error}, status=401)
        return None

    def _conv(self, request: web.Request) -> FakeConversation:
        try:
            return self.world.conversations[int(request.match_info["conversation_id"])]
        except (KeyError, ValueError):
            raise web.HTTPNotFound(text=json.dumps(NOT_FOUND), content_type="application/json") from None

    @staticmethod
    async def _json(request: web.Request) -> dict[str, Any]:
        raw = await request.read()  # cached by aiohttp: the middleware has read it already
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        return body if isinstance(body, dict) else {}

    def _token_sender(self) -> Agent | AgentBot:
        return self.world.bot if self.token_kind == "agent_bot" else self.world.agent(self.bot_user_id)

    # ---------------------------------------------------------------------------------- REST handlers

    async def _create_message(self, request: web.Request) -> web.StreamResponse:
        conv = self._conv(request)
        body = await self._json(request)
        error = self._validate_create(conv, body)
        if error:
            return web.json_response({"error": error}, status=422)
        if "source_id" in body:  # Chatwoot would then never deliver the reply to the channel
            self.defects.append(f"conversation {conv.display_id}: source_id {body['source_id']!r} sent on message create")
        attrs = body.get("content_attributes") or {}
        if isinstance(attrs, str):
            attrs = json.loads(attrs or "{}")
        msg = self.world.outgoing_message(
            conv, body.get("content"), sender=self._token_sender(), private=bool(body.get("private", False)),
            content_attributes=attrs, source_id=body.get("source_id"),
            message_type=body.get("message_type") or "outgoing", content_type=body.get("content_type") or "text",
            via_api=True)
        await self._notify()
        await self._echo_message(conv, msg)
        if self._drops > 0:
            self._drops -= 1
            return self._drop_connection(request)
        response = api_message(conv, msg)
        if body.get("echo_id") is not None:
            response = {**{k: response[k] for k in ("id", "content", "inbox_id")}, "echo_id": body["echo_id"],
                        **response}
        return web.json_response(response)

    def _validate_create(self, conv: FakeConversation, body: dict[str, Any]) -> str | None:
        message_type = body.get("message_type") or "outgoing"
        if message_type not in ("outgoing", "incoming", "template", "activity"):
            return f"'{message_type}' is not a valid message_type"
        if message_type == "incoming" and conv.inbox.channel_type != "Channel::Api":
            return "Incoming messages are only allowed in Api inboxes"
        if len(body.get("content") or "") > 150_000:
            return "Content is too long (maximum is 150000 characters)"
        recent = [m for m in conv.messages if m.via_api and m.created_at > time.time() - 60]
        if len(recent) >= MESSAGES_PER_MINUTE_LIMIT:
            return "Too many messages"
        return None

    async def _echo_message(self, conv: FakeConversation, msg: StoredMessage) -> None:
        """Send the created message back as a webhook, before or after the HTTP answer."""
        if not self._echoing:
            return
        payload = message_event(conv, msg)  # built now: agent-bot payloads are computed synchronously
        if self.echo_before_response:
            await self.send_event(payload)
        else:
            self._emit_later(lambda: self.send_event(payload))

    @staticmethod
    def _drop_connection(request: web.Request) -> web.StreamResponse:
        """Cut the TCP connection without an HTTP answer: the client sees a server disconnect."""
        transport = request.transport
        if transport is not None:
            transport.abort()
        # aiohttp ignores responses for a connection that is gone; nothing reaches the client.
        return web.Response(status=500)

    async def _list_messages(self, request: web.Request) -> web.Response:
        conv = self._conv(request)
        if self.token_kind == "agent_bot":
            return web.json_response(BOT_FORBIDDEN, status=401)
        msgs = list(conv.messages)
        if request.query.get("filter_internal_messages") == "true":
            msgs = [m for m in msgs if not m.private and m.message_type != "activity"]
        before, after = request.query.get("before"), request.query.get("after")
        if before:
            msgs = [m for m in msgs if m.id < int(before)]
        if after:
            msgs = [m for m in msgs if m.id > int(after)][:100]
        if not after:
            msgs = msgs[-20:]
        meta = {"labels": list(conv.labels), "additional_attributes": dict(conv.additional_attributes),
                "contact": contact_push_data(conv.contact), "agent_last_seen_at": None,
                "assignee_last_seen_at": None}
        if conv.assignee is not None:
            meta["assignee"] = sender_push_data(conv.assignee)
        return web.json_response({"meta": meta, "payload": [api_message(conv, m) for m in msgs]})

    async def _profile(self, request: web.Request) -> web.Response:
        """``GET /api/v1/profile``: the token's user; an agent-bot token may not call it (§7.1).

        The middleware has already refused an unknown token (401 "Invalid Access Token"), as
        Chatwoot looks the token up before it checks what a bot may call.
        """
        if self.token_kind == "agent_bot":
            return web.json_response(BOT_FORBIDDEN, status=401)
        user = self.world.agent(self.bot_user_id)
        return web.json_response({
            "id": user.id, "name": user.name, "available_name": user.name, "display_name": None,
            "email": user.email, "account_id": self.account_id, "role": "agent", "confirmed": True,
            "accounts": [{"id": self.account_id, "name": "Acme", "role": "agent", "active_at": None}],
            "access_token": self.token, "type": "User"})

    async def _show(self, request: web.Request) -> web.Response:
        conv = self._conv(request)
        data = conversation_webhook_data(conv)
        last = conv.last_public_message()
        data["messages"] = [api_message(conv, last)] if last else []
        data["meta"]["channel"] = conv.inbox.channel_type
        data.update({"account_id": conv.account.id, "uuid": str(uuid.uuid5(uuid.NAMESPACE_OID, str(conv.display_id))),
                     "muted": False})
        data.pop("account", None)
        return web.json_response(data)

    async def _toggle_status(self, request: web.Request) -> web.Response:
        conv = self._conv(request)
        body = await self._json(request)
        previous = conv.status
        status = body.get("status") or ("resolved" if previous == "open" else "open")
        if status not in STATUSES:  # Rails raises ArgumentError on an unknown enum value
            return web.Response(status=500, text="Internal Server Error")
        handoff = self.token_kind == "agent_bot" and previous == "pending" and status == "open"
        if handoff:
            self.handoffs.append(conv.display_id)
        if status == "snoozed":
            conv.snoozed_until = body.get("snoozed_until")
        if status != previous:
            who = self._token_sender().name
            self.world.activity_message(conv, f"Conversation was marked {status} by {who}")
        payload = {"success": None if handoff else True, "conversation_id": conv.display_id,
                   "current_status": status, "snoozed_until": conv.snoozed_until if status == "snoozed" else None}
        await self._publish(self._status_change(conv, status, handoff=handoff))
        return web.json_response({"meta": {}, "payload": payload})

    async def _assign(self, request: web.Request) -> web.Response:
        conv = self._conv(request)
        body = await self._json(request)
        self._assignments.setdefault(conv.display_id, []).append(body)
        if "assignee_id" in body:
            return await self._assign_agent(conv, body)
        if "team_id" in body:
            previous = conv.team.id if conv.team else None
            conv.team = self.world.team(body["team_id"]) if body["team_id"] is not None else None
            await self._announce_update(conv, changed("team_id", previous, body["team_id"]))
            team = conv.team
            return web.json_response(None if team is None else {
                "id": team.id, "name": team.name, "description": "", "allow_auto_assign": True,
                "account_id": self.account_id, "is_member": False})
        return web.json_response(None)

    async def _assign_agent(self, conv: FakeConversation, body: dict[str, Any]) -> web.Response:
        assignee_id = body["assignee_id"]
        previous = conv.assignee
        attr = "assignee_agent_bot_id" if isinstance(previous, AgentBot) else "assignee_id"
        if assignee_id is None:
            conv.assignee, answer = None, None
        elif body.get("assignee_type") == "AgentBot":
            bot = self.world.bot if assignee_id == self.world.bot.id else AgentBot(assignee_id, f"Bot {assignee_id}")
            conv.assignee, attr = bot, "assignee_agent_bot_id"
            answer = {"id": bot.id, "name": bot.name, "description": "", "thumbnail": "", "outgoing_url": None,
                      "bot_type": "webhook", "bot_config": {}, "account_id": self.account_id}
        else:
            agent = self.world.agent(assignee_id)
            conv.assignee = agent
            answer = {"id": agent.id, "account_id": self.account_id, "availability_status": "online",
                      "auto_offline": True, "confirmed": True, "email": agent.email, "available_name": agent.name,
                      "name": agent.name, "role": "agent", "thumbnail": "", "custom_role_id": None}
        await self._announce_update(conv, changed(attr, previous.id if previous else None, assignee_id))
        return web.json_response(answer)

    async def _announce_update(self, conv: FakeConversation, change: dict[str, Any]) -> None:
        conv.updated_at = time.time()
        await self._publish([conversation_event(conv, "conversation_updated", [change])])

    async def _get_labels(self, request: web.Request) -> web.Response:
        return web.json_response({"payload": list(self._conv(request).labels)})

    async def _set_labels(self, request: web.Request) -> web.Response:
        conv = self._conv(request)
        body = await self._json(request)
        previous = list(conv.labels)
        conv.labels = list(dict.fromkeys(str(x) for x in body.get("labels") or []))  # replaces the list
        if conv.labels != previous:
            await self._announce_update(conv, changed("label_list", previous, list(conv.labels)))
        return web.json_response({"payload": list(conv.labels)})

    async def _toggle_typing(self, request: web.Request) -> web.Response:
        conv = self._conv(request)
        body = await self._json(request)
        self._typing.setdefault(conv.display_id, []).append(str(body.get("typing_status")))
        await self._notify()
        return web.Response(status=200)

    async def _toggle_priority(self, request: web.Request) -> web.Response:
        conv = self._conv(request)
        conv.priority = (await self._json(request)).get("priority")
        return web.Response(status=200)

    async def _custom_attributes(self, request: web.Request) -> web.Response:
        conv = self._conv(request)
        conv.custom_attributes = dict((await self._json(request)).get("custom_attributes") or {})
        return web.json_response({"custom_attributes": conv.custom_attributes})
