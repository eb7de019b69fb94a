"""A fake MCP-Crew: crew requests (connector-v1 and chatwootai dialects) and a decision engine.

The default answers are believable enough for the demo; tests steer it with the knobs (failures,
hangs, dropped connections, async callbacks, duplicate callbacks) and read what it recorded.

Over 400 lines on purpose: like FakeChatwoot, one aiohttp app (crew requests in two dialects,
callbacks, the decision engine) over one recorded state, plus the default answers the demo shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import re
import time
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from aiohttp import web

from simulators.loopback import serve, shut_down

__all__ = ["FakeCrew", "CrewRequest", "default_responder", "decide"]

Action = dict[str, Any]
# A responder may be plain or async: tests often pass a lambda.
Responder = Callable[[dict[str, Any]], list[Action] | Awaitable[list[Action]]]

HUMAN_WORDS = ("atendente", "humano", "human", "agent", "pessoa", "person")
SALES_WORDS = ("preco", "price", "comprar", "buy", "valor", "quanto custa", "how much", "desconto", "discount")
SUPPORT_WORDS = ("pedido", "order", "entrega", "delivery", "rastreio", "tracking", "chegou", "arrived")
THANKS_WORDS = ("obrigad", "valeu", "thank", "thanks")
HOURS_WORDS = ("horario", "hours", "abre", "open", "fecha", "close", "funcionamento")
# Whole-word regexes over accent-folded text.
PT_MARKERS = ("ola", "oi", "bom dia", "boa tarde", "boa noite", "voce", "nao", "pedido", "obrigad[oa]", "quero",
              "preco", "horario", "atendente", "meu", "minha", "por favor", "entrega", "quanto", "qual")


@dataclass
class CrewRequest:
    kind: str  # "crew" | "chatwootai" | "decide"
    body: Any
    headers: dict[str, str]
    at: float


def _fold(text: str) -> str:
    """Lower-case and strip accents, so "preço" matches "preco"."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _has(text: str, words: tuple[str, ...]) -> bool:
    return any(word in text for word in words)


def envelope_text(envelope: dict[str, Any]) -> str:
    """The customer's burst as one string, tolerant of the envelope's exact shape."""
    messages = envelope.get("messages") or []
    parts = [str(m.get("content") or "") for m in messages if isinstance(m, dict)]
    return " ".join(p for p in parts if p) or str(envelope.get("message") or "")


def envelope_crew(envelope: dict[str, Any]) -> str:
    crew = envelope.get("crew") or (envelope.get("routing") or {}).get("crew") or ""
    return str(crew.get("name", "") if isinstance(crew, dict) else crew)


def is_portuguese(text: str) -> bool:
    folded = _fold(text)
    return any(c in text.lower() for c in "ãõçáéíóúâê") or any(
        re.search(rf"\b{marker}\b", folded) for marker in PT_MARKERS)


_ANSWERS: dict[str, tuple[str, str]] = {
    "sales": ("A Barraca Trail 2P está por R$ 899,90 à vista, ou 10x sem juros. Quer que eu reserve uma para você?",
              "The Trail Tent 2P is $179.90, with free shipping this week. Shall I reserve one for you?"),
    "support": ("Localizei seu pedido: ele saiu para entrega hoje e deve chegar até as 18h. Posso ajudar em algo mais?",
                "I found your order: it is out for delivery today and should arrive by 6 pm. Anything else?"),
    "hours": ("Atendemos de segunda a sábado, das 8h às 18h.", "We are open Monday to Saturday, 8 am to 6 pm."),
    "thanks": ("Por nada! Se precisar de algo mais, é só chamar.", "You're welcome! Anything else, just ask."),
    "generic": ("Olá! Sou o assistente da Acme Outdoor ({crew}). Como posso ajudar?",
                "Hi! I'm the Acme Outdoor assistant ({crew}). How can I help?"),
    "handoff": ("Vou transferir você para um atendente. Um momento, por favor.",
                "I'm passing you to a human agent. One moment, please."),
}


def _topic(crew: str, folded: str) -> str:
    if _has(folded, SALES_WORDS) or crew in ("vendas", "sales"):
        return "sales"
    if _has(folded, SUPPORT_WORDS) or crew in ("suporte", "support"):
        return "support"
    if _has(folded, HOURS_WORDS) or crew == "faq":
        return "hours"
    return "thanks" if _has(folded, THANKS_WORDS) else "generic"


def default_responder(envelope: dict[str, Any]) -> list[Action]:
    """A believable answer, in the customer's language, by crew name and keywords."""
    text = envelope_text(envelope)
    folded = _fold(text)
    lang = 0 if is_portuguese(text) else 1
    if _has(folded, HUMAN_WORDS):
        return [{"type": "handoff", "category": "customer_request", "reason": "customer asked for a human",
                 "message": _ANSWERS["handoff"][lang]}]
    crew = envelope_crew(envelope) or "faq"
    topic = _topic(crew, folded)
    actions: list[Action] = [{"type": "reply", "content": _ANSWERS[topic][lang].format(crew=crew)}]
    if topic == "sales":
        actions.append({"type": "labels", "add": ["lead"]})
    return actions


def decide(body: dict[str, Any]) -> dict[str, Any]:
    """Decision engine by keywords (CONTRACT §5), preferring names the caller offered as candidates."""
    message = body.get("message")
    text = str(message.get("content") or "") if isinstance(message, dict) else str(message or "")
    folded = _fold(text)
    candidates = [str(c) for c in body.get("candidates") or []]
    suggested = body.get("suggested_crew") or (candidates[0] if candidates else "faq")

    def pick(*names: str) -> str:
        return next((n for n in names if n in candidates), names[0])

    if _has(folded, HUMAN_WORDS):
        return {"crew": suggested, "confidence": 0.95, "reason": "customer asked for a human", "handoff": True}
    if _has(folded, SALES_WORDS):
        return {"crew": pick("vendas", "sales"), "confidence": 0.9, "reason": "price/purchase keywords", "handoff": False}
    if _has(folded, SUPPORT_WORDS):
        return {"crew": pick("suporte", "support"), "confidence": 0.85, "reason": "order/delivery keywords",
                "handoff": False}
    return {"crew": suggested, "confidence": 0.5, "reason": "no keyword matched; kept the suggestion", "handoff": False}


class FakeCrew:
    """Fake MCP-Crew HTTP server. ``async with FakeCrew() as crew:`` or ``await crew.start()``."""

    def __init__(self, *, api_key: str = "crew-test-key") -> None:
        self.api_key = api_key
        self.url = ""
        self.responder: Responder = default_responder
        self.mode: Literal["sync", "async"] = "sync"
        self.async_delay = 0.05
        self.double_callback = False
        self.latency = 0.0
        self.decision_mode: Literal["ok", "hang", "error", "unknown_crew"] = "ok"
        self.requests: list[CrewRequest] = []
        self.duplicates = 0
        self.callbacks_sent: list[dict[str, Any]] = []  # {request_id, url, status, body}
        self.answers: dict[str, tuple[int, dict[str, Any]]] = {}  # idempotency key -> (status, body)
        self.work = 0
        """Answers computed. A request whose Idempotency-Key was answered, or is being answered
        right now (a client's retry after its own timeout), gets that answer: no new work."""
        self.joined = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._working: dict[str, asyncio.Future[tuple[int, dict[str, Any]]]] = {}
        self._fail: list[tuple[int, int, float | None]] = []  # [remaining, status, retry_after]
        self._fail_always: int | None = None
        self._hang = 0
        self._drop = 0
        self._keys: list[str] = []
        self._cond = asyncio.Condition()
        self._stopping = asyncio.Event()
        self._callbacks_open = asyncio.Event()
        self._callbacks_open.set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    # ---------------------------------------------------------------------------------- lifecycle

    async def start(self) -> FakeCrew:
        app = web.Application()
        app.add_routes([
            web.post("/crew", self._crew),
            web.post("/chatwootai", self._chatwootai),
            web.post("/decide", self._decide),
            web.get("/health", self._health),
        ])
        self._runner, self.url = await serve(app)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return self

    async def stop(self) -> None:
        self._stopping.set()  # hung handlers return, so the runner shuts down at once
        self._callbacks_open.set()
        await shut_down(self._tasks, self._session, self._runner)

    async def __aenter__(self) -> FakeCrew:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def crew_url(self) -> str:
        return self.url + "/crew"

    @property
    def chatwootai_url(self) -> str:
        return self.url + "/chatwootai"

    @property
    def decide_url(self) -> str:
        return self.url + "/decide"

    # ---------------------------------------------------------------------------------- knobs

    def fail_next(self, times: int, status: int, retry_after: float | None = None) -> None:
        self._fail.append((times, status, retry_after))

    def fail_always(self, status: int | None) -> None:
        """Every crew call answers ``status`` (None switches it off)."""
        self._fail_always = status

    def hang_next(self, times: int = 1) -> None:
        """The next crew calls never answer (until stop): the client must time out."""
        self._hang += times

    def drop_next(self, times: int = 1) -> None:
        """The next crew calls are read, then the connection is cut without an answer."""
        self._drop += times

    def hold_callbacks(self) -> None:
        """Async mode: no callback is sent until :meth:`release_callbacks` (or stop)."""
        self._callbacks_open.clear()

    def release_callbacks(self) -> None:
        self._callbacks_open.set()

    # ---------------------------------------------------------------------------------- recording

    def crew_requests(self) -> list[Any]:
        return [r.body for r in self.requests if r.kind in ("crew", "chatwootai")]

    def decisions(self) -> list[Any]:
        return [r.body for r in self.requests if r.kind == "decide"]

    def unique_requests(self) -> list[str]:
        """Distinct Idempotency-Keys that got an answer, first-seen order."""
        return list(self._keys)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        async with self._cond:
            try:
                await asyncio.wait_for(self._cond.wait_for(predicate), timeout)
            except TimeoutError:
                raise TimeoutError(
                    f"FakeCrew.wait_for: still false after {timeout}s; {len(self.requests)} requests "
                    f"({[r.kind for r in self.requests[-5:]]} last), {len(self.callbacks_sent)} callbacks "
                    f"(statuses {[c['status'] for c in self.callbacks_sent]}), duplicates={self.duplicates}"
                ) from None

    async def _notify(self) -> None:
        async with self._cond:
            self._cond.notify_all()

    # ---------------------------------------------------------------------------------- handlers

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _record(self, request: web.Request, kind: str) -> Any:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self.requests.append(CrewRequest(kind, body, dict(request.headers), time.time()))
        await self._notify()
        return body

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    async def _faults(self, request: web.Request) -> web.StreamResponse | None:
        """Apply the crew-call knobs in order: drop, hang, fail; then the simulated latency."""
        if self._drop > 0:
            self._drop -= 1
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)  # never reaches the client: the connection is gone
        if self._hang > 0:
            self._hang -= 1
            await self._stopping.wait()
            return web.Response(status=503)
        failure = self._take_failure()
        if failure is not None:
            status, retry_after = failure
            headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
            return web.json_response({"error": "simulated failure"}, status=status, headers=headers)
        return None

    async def _think(self) -> None:
        """The crew's own time to answer (``latency``); stop() cuts it short."""
        if self.latency:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.latency)

    def _take_failure(self) -> tuple[int, float | None] | None:
        if self._fail_always is not None:
            return self._fail_always, None
        for i, (remaining, status, retry_after) in enumerate(self._fail):
            if remaining > 0:
                self._fail[i] = (remaining - 1, status, retry_after)
                return status, retry_after
        return None

    async def _actions(self, envelope: dict[str, Any]) -> list[Action]:
        result = self.responder(envelope)
        if inspect.isawaitable(result):
            result = await result
        return list(result)

    async def _crew(self, request: web.Request) -> web.StreamResponse:
        envelope = await self._record(request, "crew")
        if not self._authorised(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        if not isinstance(envelope, dict):
            return web.json_response({"error": "body must be a JSON object"}, status=400)
        key = request.headers.get("Idempotency-Key") or str(envelope.get("request_id") or "")
        if key and key in self.answers:  # a retry of a request already answered: same answer, no new work
            self.duplicates += 1
            await self._notify()
            status, body = self.answers[key]
            return web.json_response(body, status=status)
        if key and key in self._working:  # the same request while it is being worked on: join it
            self.joined += 1
            try:
                status, body = await asyncio.shield(self._working[key])
                return web.json_response(body, status=status)
            except asyncio.CancelledError:
                if self._stopping.is_set():
                    raise
                # That attempt failed without an answer: this request does the work itself.
        fault = await self._faults(request)  # a dropped, hung or failing request does no work
        if fault is not None:
            return fault
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await self._notify()
        working: asyncio.Future[tuple[int, dict[str, Any]]] = asyncio.get_running_loop().create_future()
        if key:
            self._working[key] = working
        try:
            await self._think()
            self.work += 1
            actions = await self._actions(envelope)
            if self.mode == "async":
                status, body = 202, {"status": "accepted"}
                self._spawn(self._callback(envelope, key, actions))
            else:
                status, body = 200, {"actions": actions}
            if key:
                self.answers[key] = (status, body)
                self._keys.append(key)
            working.set_result((status, body))
            await self._notify()
            return web.json_response(body, status=status)
        finally:
            self.in_flight -= 1
            if not working.done():
                working.cancel()
            if key and self._working.get(key) is working:
                del self._working[key]

    async def _callback(self, envelope: dict[str, Any], key: str, actions: list[Action]) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), self.async_delay)
        await self._callbacks_open.wait()  # stop() opens it too
        url = str(envelope.get("callback_url") or "")
        document = {"request_id": envelope.get("request_id") or key, "actions": actions}
        for _ in range(2 if self.double_callback else 1):
            status, body = await self._post_callback(url, document)
            self.callbacks_sent.append({"request_id": document["request_id"], "url": url, "status": status,
                                        "body": body})
            await self._notify()

    async def _post_callback(self, url: str, document: dict[str, Any]) -> tuple[int, Any]:
        assert self._session is not None
        try:
            async with self._session.post(url, json=document,
                                          headers={"Authorization": f"Bearer {self.api_key}"}) as resp:
                text = await resp.text()
                try:
                    return resp.status, json.loads(text) if text else None
                except ValueError:
                    return resp.status, text
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return 0, repr(exc)  # 0 = no HTTP answer (receiver down or bad callback_url)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _chatwootai(self, request: web.Request) -> web.StreamResponse:
        """The seed's legacy dialect: ``{"action":"process_message","data":{...}}``."""
        body = await self._record(request, "chatwootai")
        if not self._authorised(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        if not isinstance(body, dict) or body.get("action") != "process_message":
            return web.json_response({"error": "unknown action"}, status=400)
        fault = await self._faults(request)
        if fault is not None:
            return fault
        await self._think()
        data = body.get("data") or {}
        envelope = {"crew": f"{data.get('channel') or 'faq'}_crew", "messages": [{"content": data.get("message")}],
                    "chatwoot": {"conversation": data.get("conversation_id"), "channel": data.get("channel")}}
        actions = await self._actions(envelope)
        text = next((a.get("content") or a.get("message") for a in actions
                     if a.get("type") in ("reply", "handoff") and (a.get("content") or a.get("message"))), None)
        await self._notify()
        return web.json_response({"auto_reply": text is not None, "reply_content": text})

    async def _decide(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request, "decide")
        if not self._authorised(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        if self.decision_mode == "hang":
            await self._stopping.wait()
            return web.Response(status=503)
        if self.decision_mode == "error":
            return web.json_response({"error": "decision engine failure"}, status=500)
        if not isinstance(body, dict):
            return web.json_response({"error": "body must be a JSON object"}, status=400)
        answer = decide(body)
        if self.decision_mode == "unknown_crew":
            answer = {**answer, "crew": "crew_that_does_not_exist", "reason": "simulated unknown crew"}
        return web.json_response(answer)
