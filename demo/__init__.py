"""Runs ``python -m sidecar --demo``: the real sidecar next to a simulated Chatwoot and MCP-Crew.

Everything runs in one process and one event loop: the simulated Chatwoot and MCP-Crew (the
same aiohttp servers the tests use, on 127.0.0.1), the sidecar's own Sanic app, and simulated
customers writing on WhatsApp, Facebook, Instagram and the website widget. Nothing else has to
be installed or running, and nothing leaves the machine.

Why in-process rather than a ``python -m sidecar`` child process: one Ctrl-C stops everything
in the right order (customers first, then the sidecar finishes the answers it is working on
while the simulated Chatwoot is still there to receive them, then the simulators), no child
can be orphaned, and the live feed can read the simulated Chatwoot's records directly. The
sidecar is the very app ``python -m sidecar`` runs (``create_app``); only the way its server
is started differs, following Sanic's documented low-level sequence (see ``_SidecarServer``).

Over 400 lines on purpose: the demo's whole life, read top to bottom in the order it happens
(settings, the data folder, the simulated crews' answers, the live feed, the sidecar's server,
then the ordered start and Ctrl-C); only the lock and the terminal handling stand apart
(``demo.lock``, ``demo.terminal``) because they are used alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import random
import secrets
import signal
import socket
import sys
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from connector_config import (
    ENV_OVERRIDES,
    Config,
    ConfigError,
    config_from_mapping,
    deep_merge,
    load_raw,
)
from demo.lock import DataDirBusy, DataDirLock
from demo.terminal import complain, say, take_foreground
from simulators import FakeChatwoot, FakeConversation, FakeCrew, run_customers
from simulators.fake_crew import (
    default_responder,
    envelope_crew,
    envelope_text,
    is_portuguese,
)

DEFAULT_RATE = 1.0
"""Customer messages per second when neither ``--demo-rate`` nor ``$DEMO_RATE`` says otherwise."""

MAX_RATE = 200.0
"""Beyond this the simulated customers, not the sidecar, become the bottleneck."""

RATE_ENV = "DEMO_RATE"
DATA_DIR_ENV = "DEMO_DATA_DIR"
DEMO_DIR = Path("demo-data")
DEMO_CONFIG_NAME = "demo-config.yaml"
DB_NAME = "connector.db"
DEFAULT_PORT = 5000
CHANNELS = ("whatsapp", "facebook", "instagram", "webwidget")

# Connector variables the demo honours: only where it listens and the admin token. Not
# SIDECAR_DB or SIDECAR_LOG_DIR: they name an operator's real state (the image sets them to
# /data), and simulated conversations must never be written into it. DEMO_DATA_DIR moves the
# demo's own files.
_LOCAL_ENV = ("SIDECAR_HOST", "SIDECAR_PORT", "SIDECAR_ADMIN_TOKEN")

# Seconds each crew "thinks" (min, max): the sales crew looks up stock and prices, Instagram's
# crew writes longer answers. The rest answer almost at once. Slow crews show the typing
# indicator, the queue and the latency histogram doing something.
CREW_LATENCY: dict[str, tuple[float, float]] = {
    "vendas": (1.5, 3.5),
    "instagram_crew": (0.8, 2.0),
}
FAST_LATENCY = (0.1, 0.6)

# Crews that hand an urgent conversation to a human (with a private note for the agent).
URGENT_HANDOFF_CREWS = ("suporte", "whatsapp_crew")
URGENT_WORDS = ("urgente", "urgent")

# Every this many seconds one crew call answers 503, so retries and attempts show up in the
# console; the retry succeeds a moment later.
HICCUP_EVERY_SECONDS = 20.0


def demo_settings(data_dir: Path = DEMO_DIR) -> dict[str, Any]:
    """The demo's config.yaml, minus the wiring to the simulators (added by ``build_config``).

    Durations are shorter than in production so that bursts, retries and hand-offs happen
    within a minute of watching.
    """
    return {
        "server": {"host": "127.0.0.1", "port": DEFAULT_PORT},
        "state": {"path": str(data_dir / "connector.db")},
        "logging": {"dir": str(data_dir / "logs")},
        "chatwoot": {"timeout_seconds": 5, "typing_indicator": True},
        "mcp_crew": {"timeout_seconds": 10, "decision_timeout_seconds": 1},
        "context": {"max_messages": 10},
        "processing": {
            "debounce_seconds": 1.0,
            "debounce_max_seconds": 4.0,
            "retry_base_seconds": 0.5,
            "retry_max_seconds": 8,
            "max_attempts": 4,
            "lease_seconds": 20,
            # processing.concurrency stays at its shipped default: slow crews must not queue the
            # customers behind them (it was 4 here: at --demo-rate 8 the queue only grew, and on a
            # loaded machine no shadow answer had come a minute after the first draft).
        },
        "routing": {
            "default_crew": "suporte",
            "rules": [
                # Opening hours: answered by the local `faq` crew, no network involved.
                {"crew": "faq", "keywords": ["horário", "horario", "hours", "abrem", "open"]},
                {"crew": "vendas", "keywords": ["preço", "preco", "price", "custa", "comprar", "buy",
                                                "desconto", "discount"]},
                {"crew": "suporte", "pattern": r"(pedido|order)\s*#?\d+"},
                # A new WhatsApp crew tried on live traffic: its answers are only recorded
                # (console: 6 Analytics), the customers get whatsapp_crew's.
                {"crew": "whatsapp_crew", "channel": "whatsapp", "name": "whatsapp",
                 "shadow_crew": "whatsapp_crew_v2"},
                {"crew": "facebook_crew", "channel": "facebook", "name": "facebook"},
                {"crew": "instagram_crew", "channel": "instagram", "name": "instagram"},
                {"crew": "site_crew", "channel": "webwidget", "name": "site"},
            ],
        },
        # The Instagram inbox in draft mode: whichever crew answers, its answers reach the agents
        # as private "suggested reply" notes, never the customer.
        "inboxes": {23: {"mode": "draft"}},
        "handoff": {"team_id": 1, "remind_after_minutes": 2},
        "crews": {
            "faq": {
                "backend": "local",
                "answers": [
                    {"keywords": ["horário", "horario", "abrem"],
                     "reply": "Atendemos de segunda a sábado, das 8h às 18h."},
                    {"keywords": ["hours", "open"],
                     "reply": "We are open Monday to Saturday, 8 am to 6 pm."},
                ],
                "handoff_keywords": ["atendente", "humano", "human"],
                "handoff_message": "Certo, vou chamar um atendente.",
                "fallback_reply": "Vou chamar um atendente.",
            },
        },
        "health": {"probe_interval_seconds": 5},
    }


def simulator_wiring(chatwoot: FakeChatwoot, crew: FakeCrew) -> dict[str, Any]:
    """The settings that point the sidecar at the simulators; nothing may override them."""
    return {
        "chatwoot": {
            "api_url": chatwoot.url,
            "api_access_token": chatwoot.token,
            "webhook_secret": chatwoot.webhook_secret or "",
            "allow_unsigned": False,
            "inbox_ids": [],
            "bot_user_id": None,
        },
        "mcp_crew": {
            "api_url": crew.crew_url,
            "api_key": crew.api_key,
            "decision_engine_url": crew.decide_url,
            "dialect": "connector-v1",
        },
    }


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # The same option the server sets, so a port in TIME_WAIT does not count as busy.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _any_free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _connect_host(host: str) -> str:
    """Where a local client reaches a server listening on ``host``."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


@dataclass(frozen=True)
class DemoSetup:
    config: Config
    config_file: Path
    port_moved_from: int | None


def prepare_data_dir(data_dir: Path) -> None:
    """Make ``data_dir`` ready for a fresh run; raises ConfigError if it holds foreign state.

    Each run starts from an empty database: the previous run's simulated Chatwoot is gone, so
    its conversations could not be answered, and its unfinished jobs would only turn into dead
    letters. A database is removed only where a demo wrote its config file beside it, so a
    database the demo did not create is never touched.
    """
    db = data_dir / DB_NAME
    data_dir.mkdir(parents=True, exist_ok=True)
    if not db.exists():
        return
    if not (data_dir / DEMO_CONFIG_NAME).exists():
        raise ConfigError(str(db), f"exists but was not written by the demo; choose another ${DATA_DIR_ENV}")
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            (data_dir / (DB_NAME + suffix)).unlink()


def build_config(
    chatwoot: FakeChatwoot, crew: FakeCrew, *, data_dir: Path, overlay_path: str | None,
    host: str | None, port: int | None, env: Mapping[str, str], admin_token: str,
) -> DemoSetup:
    """The demo's effective config, written to ``<data_dir>/demo-config.yaml``.

    Layers, later wins: the demo's settings, the ``--config`` file if given, the environment
    variables in ``_LOCAL_ENV``, ``--host``/``--port``, and last what the demo owns: its files
    under ``data_dir`` and the wiring to the simulators. The result is written out whole, so
    the file the sidecar watches (and ``POST /config`` rewrites) describes exactly this run,
    and never the operator's own config.yaml.
    """
    raw = demo_settings(data_dir)
    overlay: dict[str, Any] = {}
    if overlay_path:
        overlay, _ = load_raw(overlay_path, {})
        raw = deep_merge(raw, overlay)
    local_env = {name: env[name] for name in _LOCAL_ENV if env.get(name, "").strip()}
    raw.setdefault("server", {})["admin_token"] = admin_token
    first = config_from_mapping(raw, local_env)
    overlay_server = overlay.get("server")
    explicit_port = (port is not None or "SIDECAR_PORT" in local_env
                     or (isinstance(overlay_server, dict) and overlay_server.get("port") is not None))
    listen_host = host or first.server.host
    listen_port = port or first.server.port
    moved_from = None
    if not explicit_port and not _port_is_free(listen_host, listen_port):
        # macOS uses 5000 for AirPlay; a newcomer should still get a running demo.
        moved_from, listen_port = listen_port, _any_free_port(listen_host)
    raw = deep_merge(raw, {
        "server": {"host": listen_host, "port": listen_port,
                   "public_url": f"http://{_connect_host(listen_host)}:{listen_port}",
                   "admin_token": first.server.admin_token},
        "state": {"path": str(data_dir / DB_NAME)},
        "logging": {"dir": str(data_dir / "logs")},
    })
    raw = deep_merge(raw, simulator_wiring(chatwoot, crew))
    config_file = data_dir / DEMO_CONFIG_NAME
    # The file holds this run's generated tokens: readable by its owner only.
    fd = os.open(config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("# Written by `python -m sidecar --demo` for this run only; the tokens are throwaway.\n")
        yaml.safe_dump(raw, out, sort_keys=False, allow_unicode=True)
    config = config_from_mapping(raw, {}, source_path=str(config_file))
    return DemoSetup(config, config_file, moved_from)


def conversation_count(rate: float) -> int:
    """Enough conversations that each customer writes every ~8 s on average.

    Faster than that, most messages land inside the previous one's burst window and the
    sidecar (correctly) answers the burst once, so a fast demo would show few replies.
    """
    return max(12, min(400, round(rate * 8)))


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    """Wait ``seconds``, or less if the demo is stopping."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def demo_responder(stop: asyncio.Event, rng: random.Random) -> Callable[[dict[str, Any]], Any]:
    """The simulated MCP-Crew's crews: the simulator's answers, some slow, some handing off."""

    async def respond(envelope: dict[str, Any]) -> list[dict[str, Any]]:
        crew = envelope_crew(envelope)
        await _pause(stop, rng.uniform(*CREW_LATENCY.get(crew, FAST_LATENCY)))
        text = envelope_text(envelope)
        if crew in URGENT_HANDOFF_CREWS and any(word in _fold(text) for word in URGENT_WORDS):
            pt = is_portuguese(text)
            return [
                {"type": "note", "content": f"[{crew}] Cliente com urgência; transferido para a equipe."},
                {"type": "handoff", "reason": "urgent request",
                 "message": ("Entendi a urgência, vou passar você para um atendente agora mesmo."
                             if pt else "I understand it's urgent; passing you to a colleague right now.")},
            ]
        return default_responder(envelope)

    return respond


async def _hiccups(crew: FakeCrew, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await _pause(stop, HICCUP_EVERY_SECONDS)
        if not stop.is_set():
            crew.fail_next(1, 503)


# ------------------------------------------------------------------------------------ the feed


def _clean(text: str | None, limit: int = 90) -> str:
    """One terminal line: control characters (escape sequences included) never reach the tty."""
    flat = "".join(ch if ch.isprintable() else " " for ch in (text or ""))
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _describe(conv: FakeConversation, msg: Any) -> tuple[str, str] | None:
    if msg.message_type == "incoming":
        return conv.contact.name, ">"
    if msg.message_type == "activity":
        return "chatwoot", "·"
    if msg.via_api:
        return ("bot note", "✎") if msg.private else ("bot", "<")
    if msg.message_type == "outgoing" and msg.sender is not None:
        return f"agent {msg.sender.name.split()[0]}", "<"
    return None


class Feed:
    """Prints every message the simulated Chatwoot stores, as it happens."""

    def __init__(self, chatwoot: FakeChatwoot, out: Callable[[str], None]) -> None:
        self.chatwoot = chatwoot
        self.out = out
        self.last_id = 0

    def _new(self) -> list[tuple[FakeConversation, Any]]:
        fresh = [(conv, msg) for conv in self.chatwoot.world.conversations.values()
                 for msg in conv.messages if msg.id > self.last_id]
        return sorted(fresh, key=lambda pair: pair[1].id)

    def flush(self) -> None:
        for conv, msg in self._new():
            self.last_id = max(self.last_id, msg.id)
            who = _describe(conv, msg)
            if who is not None:
                name, arrow = who
                self.out(f"  {conv.channel:<9} #{conv.display_id}  {_clean(name, 18):<18} {arrow} "
                         f"{_clean(msg.content)}")

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                # Woken by every API call and webhook answer of the simulated Chatwoot.
                await self.chatwoot.wait_for(lambda: stop.is_set() or bool(self._new()), timeout=1.0)
            self.flush()


def summary(chatwoot: FakeChatwoot, customer_counts: Mapping[str, int]) -> dict[str, int]:
    """What the simulated Chatwoot recorded, for the closing line."""
    conv_ids = list(chatwoot.world.conversations)
    statuses = [status for _, _, status, _ in chatwoot.webhook_results]
    return {
        "conversations": len(conv_ids),
        "customer_messages": int(customer_counts.get("messages", 0)),
        "replies": sum(len(chatwoot.replies(c)) for c in conv_ids),
        "notes": sum(len(chatwoot.notes(c)) for c in conv_ids),
        "handoffs": len(chatwoot.handoffs),
        "label_updates": len(chatwoot.calls("labels")),
        "webhooks": len(statuses),
        "webhook_errors": sum(1 for s in statuses if not 200 <= s < 300),
        "defects": len(chatwoot.defects),
    }


# ------------------------------------------------------------------------------------ sidecar


class _SidecarServer:
    """The sidecar's Sanic app on the demo's event loop, with Sanic's own lifecycle order.

    ``app.create_server`` binds the socket but runs no lifecycle event (sanic/mixins/startup.py):
    the caller runs ``startup`` (routes), ``before_server_start`` (the sidecar opens SQLite and
    its HTTP session), starts serving, then ``after_server_start`` (workers). Stopping mirrors
    ``sanic/server/runners.py``: ``before_server_stop`` (workers finish their answers), close
    the listener and the connections, then ``after_server_stop`` (SQLite and session closed).
    """

    def __init__(self, config: Config) -> None:
        from sidecar.app import create_app  # Sanic is imported only when a server is wanted

        # The demo's terminal shows the feed; the sidecar's log lines go to its file.
        self.app = create_app(config, config_path=config.source_path, name="chatwoot_sidecar_demo",
                              log_to_stderr=False)
        self.app.config.MOTD = False
        # Slow crews think for up to a few seconds; Ctrl-C should not wait the production 15.
        self.app.config.GRACEFUL_SHUTDOWN_TIMEOUT = 8.0
        self.config = config
        self.server: Any = None
        self.started = False

    async def start(self) -> None:
        # create_server binds the socket at once (a busy port fails here, before anything is
        # opened); start_serving=False keeps connections waiting until the resources exist.
        server = await self.app.create_server(
            host=self.config.server.host, port=self.config.server.port,
            return_asyncio_server=True, access_log=False,
            asyncio_server_kwargs={"start_serving": False})
        assert server is not None
        self.server = server
        await server.startup()
        self.started = True
        await server.before_start()
        await server.start_serving()
        await server.after_start()

    async def stop(self) -> None:
        server = self.server
        if server is None or not self.started:
            return
        await server.before_stop()
        if server.server is not None:
            server.server.close()
        for conn in list(server.connections):
            conn.close_if_idle()
        # Customers are stopped and the workers are done: a connection still busy now would
        # only be an echo webhook, which the sidecar treats as its own message anyway.
        for conn in list(server.connections):
            with contextlib.suppress(Exception):
                conn.abort()
        for task in list(getattr(self.app, "tasks", [])):
            task.cancel()
        await server.after_stop()


# ------------------------------------------------------------------------------------ entry


def _print(line: str = "") -> None:
    say(line)  # a reader that went away (`make run | tee`, Ctrl-C) must not stop the demo


def _shown_path(path: str | Path) -> str:
    """Relative to the working directory when inside it: shorter to copy."""
    absolute = Path(path).resolve()
    with contextlib.suppress(ValueError):
        return str(absolute.relative_to(Path.cwd().resolve()))
    return str(absolute)


def _python_command() -> str:
    exe = Path(sys.executable)
    with contextlib.suppress(ValueError):
        return str(exe.absolute().relative_to(Path.cwd().resolve()))
    return "python"


def resolve_rate(rate: float | None, env: Mapping[str, str]) -> float:
    """``--demo-rate``, else ``$DEMO_RATE``, else 1 message/s; raises ConfigError when invalid."""
    if rate is None:
        text = env.get(RATE_ENV, "").strip()
        if not text:
            return DEFAULT_RATE
        try:
            rate = float(text)
        except ValueError:
            raise ConfigError("demo rate", f"${RATE_ENV} must be a number of messages per second") from None
    if not 0 < rate <= MAX_RATE:
        raise ConfigError("demo rate", f"must be greater than 0 and at most {MAX_RATE:g} messages per second")
    return rate


def _banner(setup: DemoSetup, rate: float, chatwoot: FakeChatwoot, crew: FakeCrew) -> None:
    cfg = setup.config
    base = f"http://{_connect_host(cfg.server.host)}:{cfg.server.port}"
    db = _shown_path(cfg.state.path)
    log_file = _shown_path(Path(cfg.logging.dir) / "chatwoot_mcp_connector.log")
    _print("Chatwoot ↔ MCP-Crew sidecar: demo")
    if setup.port_moved_from is not None:
        _print(f"  (port {setup.port_moved_from} is busy, using {cfg.server.port}; --port chooses one)")
    _print(f"  sidecar            {base}   (simulated Chatwoot {chatwoot.url}, simulated MCP-Crew {crew.url})")
    _print(f"  health             curl {base}/health")
    _print(f"  metrics            curl {base}/metrics")
    # The admin token goes to an owner-only file, never to the terminal (it would end up in
    # scroll-back, screenshots and recordings).
    token_file = setup.config_file.parent / "admin-token"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(cfg.server.admin_token)
    _print(f'  config (admin)     curl -H "Authorization: Bearer $(cat {_shown_path(token_file)})" {base}/config')
    _print(f"  console            {_python_command()} -m console --db {db}")
    _print(f"  log file           {log_file}")
    _print(f"  demo config        {_shown_path(setup.config_file)}")
    _print(f'  analytics (admin)  curl -H "Authorization: Bearer $(cat {_shown_path(token_file)})" {base}/stats')
    _print("  modes              Instagram inbox: draft (answers become private suggested-reply notes);")
    _print("                     whatsapp: shadow crew whatsapp_crew_v2 beside the live one (console 6 Analytics)")
    _print(f"  customers write {rate:g} message(s)/s on {', '.join(CHANNELS)}.  Ctrl-C stops.")
    _print()


async def _amain(*, config_path: str | None, host: str | None, port: int | None, rate: float) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    main_task = asyncio.current_task()
    signals_seen = 0

    def on_signal() -> None:
        nonlocal signals_seen
        signals_seen += 1
        # Act first, then say so: a write to a terminal or pipe that is gone must never keep
        # the demo from stopping.
        if signals_seen == 1:
            stop.set()
            _print("\nstopping: customers first, then the answers in progress…")
        elif main_task is not None:
            main_task.cancel()
            _print("second signal: stopping now")

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal)
        except (NotImplementedError, RuntimeError):  # Windows: no loop signal handlers
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(on_signal))

    rng = random.Random()
    chatwoot = FakeChatwoot(token=secrets.token_urlsafe(24), webhook_secret=secrets.token_urlsafe(24),
                            handoff_on_bot_failure=True)
    crew = FakeCrew(api_key=secrets.token_urlsafe(24))
    crew.responder = demo_responder(stop, rng)
    sidecar: _SidecarServer | None = None
    customers_stop = asyncio.Event()
    tasks: list[asyncio.Task[Any]] = []
    counts: dict[str, int] = {}
    data_lock: DataDirLock | None = None
    try:
        await chatwoot.start()
        await crew.start()
        try:
            data_dir = Path(os.environ.get(DATA_DIR_ENV, "").strip() or DEMO_DIR)
            data_lock = _lock_data_dir(data_dir)  # before anything in the folder is touched
            if data_lock is None:
                return 2
            prepare_data_dir(data_dir)
            admin_token = os.environ.get("SIDECAR_ADMIN_TOKEN", "").strip() or secrets.token_urlsafe(32)
            setup = build_config(chatwoot, crew, data_dir=data_dir, overlay_path=config_path, host=host,
                                 port=port, env=os.environ, admin_token=admin_token)
        except ConfigError as exc:
            complain(f"config error: {exc}")
            if data_lock is not None:  # a refused folder (another program's database) keeps nothing
                data_lock.release(remove=True)
            return 2
        # A live reload (POST /config, an edit of the demo config file) re-reads the
        # environment: an operator's exported CHATWOOT_API_URL must never rewire the demo to a
        # real Chatwoot. Everything the demo honours is already folded into its file.
        for name, *_ in ENV_OVERRIDES:
            os.environ.pop(name, None)
        os.environ.pop("SIDECAR_CONFIG", None)

        sidecar = _SidecarServer(setup.config)
        try:
            await sidecar.start()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                complain(f"error: server.port: {setup.config.server.host}:{setup.config.server.port} "
                         "is already in use (choose another with --port)")
                return 2
            raise
        chatwoot.webhook_url = f"http://{_connect_host(setup.config.server.host)}:{setup.config.server.port}" \
                               "/webhook/chatwoot"
        _banner(setup, rate, chatwoot, crew)

        feed = Feed(chatwoot, _print)
        tasks.append(asyncio.create_task(feed.run(stop), name="demo-feed"))
        tasks.append(asyncio.create_task(_hiccups(crew, stop), name="demo-hiccups"))
        customers = asyncio.create_task(run_customers(
            chatwoot, rate_per_second=rate, channels=CHANNELS, stop=customers_stop, rng=rng,
            conversations=conversation_count(rate)))

        await stop.wait()
        customers_stop.set()
        counts = await customers
        await sidecar.stop()  # the workers finish the answers in progress; Chatwoot is still up
        sidecar = None
        feed.flush()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        figures = summary(chatwoot, counts)
        _print("demo summary: " + " ".join(f"{key}={value}" for key, value in figures.items()))
        for defect in chatwoot.defects[:5]:
            _print(f"  defect seen by the simulated Chatwoot: {_clean(defect, 200)}")
        _print(f"state kept in {_shown_path(setup.config.state.path)}; look at it with: "
               f"{_python_command()} -m console --db {_shown_path(setup.config.state.path)}")
        return 0
    finally:
        customers_stop.set()
        stop.set()
        for task in tasks:
            task.cancel()
        if sidecar is not None:
            with contextlib.suppress(Exception):
                await sidecar.stop()
        await crew.stop()
        await chatwoot.stop()
        if data_lock is not None:  # last: the sidecar has closed the database
            data_lock.release()


def _lock_data_dir(data_dir: Path) -> DataDirLock | None:
    """Holds ``data_dir`` for this demo (demo/lock.py), or says in one line why not."""
    try:
        return DataDirLock.acquire(data_dir)
    except DataDirBusy as exc:
        complain(f"error: {_shown_path(data_dir)} is in use by another demo{exc.holder}: stop that one, "
                 f"or give this one its own folder with {DATA_DIR_ENV}=<folder>")
    except OSError as exc:
        complain(f"error: ${DATA_DIR_ENV}: cannot use {_shown_path(data_dir)} ({exc.strerror or exc})")
    return None


def run_demo(config_path: str | None = None, host: str | None = None, port: int | None = None,
             rate: float | None = None) -> int:
    """``python -m sidecar --demo``; returns the exit status (0 after Ctrl-C or SIGTERM)."""
    try:
        resolved = resolve_rate(rate, os.environ)
    except ConfigError as exc:
        complain(f"config error: {exc}")
        return 2
    # Ctrl-C reaches the demo alone, so `make run` ends with the demo's status (demo/terminal.py).
    give_back_terminal = take_foreground()
    try:
        return asyncio.run(_amain(config_path=config_path, host=host, port=port, rate=resolved))
    except asyncio.CancelledError:  # a second Ctrl-C during the shutdown
        return 130
    except KeyboardInterrupt:  # Ctrl-C before the loop's handlers were installed
        return 130
    finally:
        if give_back_terminal is not None:
            give_back_terminal()
