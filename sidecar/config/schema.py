"""Provides the sidecar's typed, frozen and validated configuration (config.yaml + environment).

Every value is checked once, here, so the rest of the sidecar can trust the types it reads.
A bad value raises :class:`ConfigError` naming the dotted key (``processing.max_attempts``)
and the reason; the CLI prints that single line and exits with status 2. Secret values never
appear in an error message.
"""

from __future__ import annotations

import copy
import ipaddress
import math
import os
import re
import socket
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

DEFAULT_CONFIG_PATH = "config.yaml"
"""Used when neither ``--config`` nor ``$SIDECAR_CONFIG`` names a file; may be absent."""

CONFIG_PATH_ENV = "SIDECAR_CONFIG"
"""Environment variable naming the config file."""

CHANNELS: tuple[str, ...] = (
    "whatsapp",
    "facebook",
    "instagram",
    "webwidget",
    "api",
    "email",
    "telegram",
    "sms",
    "line",
    "twitter",
    "tiktok",
)
"""Channel names that routing rules may use (CONTRACT §2)."""

DIALECTS: tuple[str, ...] = ("connector-v1", "chatwootai")
"""Wire formats spoken to MCP-Crew (CONTRACT §5)."""

BACKENDS: tuple[str, ...] = ("http", "mcp", "crewai_amp", "local")
"""Kinds of crew back-end a ``crews:`` entry may name."""

REMOTE_BACKENDS: tuple[str, ...] = ("http", "mcp", "crewai_amp")
"""Back-ends that are reached over the network and therefore need a ``url``."""

LOG_LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
"""Accepted values of ``logging.level``."""

# A header whose name contains one of these words carries a credential: it is masked and
# reported by secret_values() like the tokens.
_SECRET_HEADER_WORDS = ("auth", "token", "secret", "key", "password", "cookie", "signature")


class ConfigError(Exception):
    """A configuration value is missing, malformed or refused."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        """Dotted key of the bad value, e.g. ``processing.max_attempts``."""
        self.reason = reason
        """Why it was refused; never contains a secret value."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions pickle their args; ours are (key, reason), not the formatted message.
        return (type(self), (self.key, self.reason))


# --------------------------------------------------------------------------------------------
# The configuration records
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The sidecar's own HTTP server."""

    host: str = "0.0.0.0"
    """Listen address (env ``SIDECAR_HOST``)."""
    port: int = 5000
    """Listen port, 1..65535 (env ``SIDECAR_PORT``)."""
    public_url: str = ""
    """How MCP-Crew reaches the sidecar for async replies (env ``SIDECAR_PUBLIC_URL``)."""
    admin_token: str = ""
    """Bearer token for ``/config``; empty means ``/config`` answers 403 (env ``SIDECAR_ADMIN_TOKEN``)."""
    max_body_bytes: int = 1048576
    """Largest accepted webhook body; bigger bodies get 413."""
    request_timeout_seconds: float = 10.0
    """A request whose body has not fully arrived after this long is cut off."""
    shutdown_grace_seconds: float = 15.0
    """On SIGTERM/SIGINT: how long requests and crew work in progress may take to finish."""


@dataclass(frozen=True, slots=True)
class StateConfig:
    """Where the shared SQLite state lives."""

    path: str = "data/connector.db"
    """The SQLite file shared with the console (env ``SIDECAR_DB``)."""


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """Log files."""

    dir: str = "logs"
    """Directory of ``chatwoot_mcp_connector.log`` (env ``SIDECAR_LOG_DIR``)."""
    level: str = "INFO"
    """One of DEBUG, INFO, WARNING, ERROR, CRITICAL."""
    json: bool = False
    """Write one JSON object per line instead of plain text."""
    max_bytes: int = 10485760
    """Rotate the file when it reaches this size; 0 never rotates."""
    backup_count: int = 5
    """How many rotated files to keep."""


@dataclass(frozen=True, slots=True)
class ChatwootConfig:
    """How the sidecar talks to Chatwoot and checks its webhooks."""

    api_url: str = ""
    """Chatwoot base URL, with or without a trailing ``/api`` (env ``CHATWOOT_API_URL``)."""
    api_access_token: str = ""
    """Agent-bot or user token, sent as ``api_access_token`` (env ``CHATWOOT_API_ACCESS_TOKEN``)."""
    webhook_secrets: tuple[str, ...] = ()
    """Signing secrets; several during a rotation (file key ``webhook_secret``)."""
    allow_unsigned: bool = False
    """Accept unsigned webhooks; only for Chatwoot older than 4.12."""
    inbox_ids: tuple[int, ...] = ()
    """Inboxes the bot serves; empty means all."""
    timeout_seconds: float = 10.0
    """Timeout of one Chatwoot API call."""
    signature_tolerance_seconds: float = 300.0
    """How far a signed timestamp may be from now before the delivery is refused as stale."""
    bot_user_id: int | None = None
    """Id of the Chatwoot user whose token the sidecar uses (user-token setups)."""
    typing_indicator: bool = True
    """Show "typing…" in the conversation while a crew works."""
    typing_delay_seconds: float = 1.0
    """Show "typing…" only once a crew has been working this long (a quick answer needs none)."""
    max_in_flight: int = 64
    """Most Chatwoot API calls at the same time (waiting for a free one is not part of a timeout)."""

    @property
    def api_base(self) -> str:
        """``api_url`` without a trailing ``/`` and without a trailing ``/api``."""
        base = self.api_url.strip().rstrip("/")
        if base.endswith("/api"):
            base = base[: -len("/api")].rstrip("/")
        return base


@dataclass(frozen=True, slots=True)
class McpCrewConfig:
    """The default crew back-end (MCP-Crew over HTTP) and the optional decision engine."""

    api_url: str = ""
    """Where crew requests go (env ``MCP_CREW_API_URL``)."""
    api_key: str = ""
    """Sent as ``Authorization: Bearer …``; also authenticates callbacks (env ``MCP_CREW_API_KEY``)."""
    decision_engine_url: str = ""
    """Empty means the local rules decide (env ``MCP_CREW_DECISION_ENGINE_URL``)."""
    dialect: str = "connector-v1"
    """``connector-v1`` or ``chatwootai``."""
    timeout_seconds: float = 30.0
    """Timeout of one crew request."""
    decision_timeout_seconds: float = 2.0
    """Timeout of one decision-engine call; on expiry the local rules decide."""
    callback_timeout_seconds: float = 600.0
    """How long to wait for the callback after a ``202`` before the attempt counts as failed."""
    max_in_flight: int = 4096
    """Most requests in flight to MCP-Crew (every crew not listed under ``crews:``) at once."""


@dataclass(frozen=True, slots=True)
class ContextConfig:
    """Conversation history sent with each crew request."""

    max_messages: int = 10
    """Messages of history per request (env ``MAX_CONTEXT_MESSAGES``)."""


@dataclass(frozen=True, slots=True)
class ProcessingConfig:
    """Debounce, retries, leases, circuit breaker and workers."""

    debounce_seconds: float = 2.0
    """Quiet time after a customer message before the burst is answered."""
    debounce_max_seconds: float = 10.0
    """Cap of a sliding burst window, so a chatty customer still gets an answer."""
    max_attempts: int = 6
    """Crew attempts before a dead letter."""
    retry_base_seconds: float = 5.0
    """Smallest backoff (exponential, full jitter)."""
    retry_max_seconds: float = 1800.0
    """Largest backoff."""
    lease_seconds: float = 60.0
    """How long a claimed job stays claimed before another worker may take it after a crash."""
    breaker_failure_ratio: float = 0.7
    """Failure share, in (0, 1], that opens a back-end's circuit breaker."""
    breaker_min_requests: int = 10
    """Requests seen before the ratio counts; 0 switches the breaker off."""
    breaker_open_seconds: float = 30.0
    """How long an open breaker refuses calls before a trial request."""
    concurrency: int = 4096
    """Jobs (conversations) a worker handles at the same time, including those waiting for a crew."""
    failure_note: bool = True
    """On a final failure, post a private note saying why."""
    failure_handoff: bool = True
    """On a final failure, hand the conversation to a human."""
    workers_enabled: bool = True
    """Run the background workers (false: intake only, e.g. for tests)."""


@dataclass(frozen=True, slots=True)
class RoutingRule:
    """One routing rule; it matches when any of its conditions matches."""

    crew: str
    """Crew chosen when the rule matches."""
    channel: tuple[str, ...] = ()
    """Channel names (see ``CHANNELS``)."""
    inbox_id: tuple[int, ...] = ()
    """Chatwoot inbox ids."""
    keywords: tuple[str, ...] = ()
    """Any of these words, case- and accent-insensitive."""
    pattern: str | None = None
    """Regular expression searched in the message (checked to compile)."""
    labels: tuple[str, ...] = ()
    """Conversation labels."""


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    """Local routing: first matching rule wins, else the default crew."""

    default_crew: str = "suporte"
    """Crew used when no rule matches."""
    rules: tuple[RoutingRule, ...] = ()
    """Rules in file order."""


@dataclass(frozen=True, slots=True)
class LocalAnswer:
    """A canned answer of a ``local`` crew."""

    keywords: tuple[str, ...]
    """Any of these words triggers the reply."""
    reply: str
    """Text sent to the customer."""


@dataclass(frozen=True, slots=True)
class CrewConfig:
    """One entry of ``crews:``: which back-end serves a crew and how."""

    name: str
    """Crew name (the key under ``crews:``)."""
    backend: str
    """``http``, ``mcp``, ``crewai_amp`` or ``local``."""
    url: str = ""
    """Back-end URL (required except for ``local``)."""
    token: str = ""
    """Bearer token for the back-end."""
    tool: str = "handle_message"
    """MCP tool called (``mcp``)."""
    status_tool: str = ""
    """Optional MCP tool polled for long-running results (``mcp``)."""
    headers: tuple[tuple[str, str], ...] = ()
    """Extra HTTP headers, as (name, value) pairs."""
    timeout_seconds: float = 30.0
    """Timeout of one call."""
    deadline_seconds: float = 600.0
    """Total time allowed for a long-running run (``crewai_amp``, ``mcp`` status polling)."""
    poll_interval_seconds: float = 2.0
    """Pause between status polls."""
    dialect: str = "connector-v1"
    """Wire format for ``http`` (``connector-v1`` or ``chatwootai``)."""
    answers: tuple[LocalAnswer, ...] = ()
    """Canned answers (``local``)."""
    handoff_keywords: tuple[str, ...] = ()
    """Words that hand the conversation to a human (``local``)."""
    handoff_message: str = ""
    """Told to the customer before a hand-off (``local``)."""
    fallback_reply: str = ""
    """Reply when no answer matches (``local``)."""
    max_in_flight: int = 4096
    """Most requests in flight to this crew's back-end at once."""


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """``/health`` peer checks."""

    probe_interval_seconds: float = 15.0
    """How often peers are probed; ``/health`` serves the cached result."""


@dataclass(frozen=True, slots=True)
class ConsoleConfig:
    """The Textual console."""

    refresh_seconds: float = 1.0
    """How often the console re-reads the database."""


@dataclass(frozen=True, slots=True)
class Config:
    """The whole effective configuration."""

    server: ServerConfig = field(default_factory=ServerConfig)
    """The sidecar's HTTP server."""
    state: StateConfig = field(default_factory=StateConfig)
    """SQLite state."""
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    """Log files."""
    chatwoot: ChatwootConfig = field(default_factory=ChatwootConfig)
    """Chatwoot API and webhooks."""
    mcp_crew: McpCrewConfig = field(default_factory=McpCrewConfig)
    """Default crew back-end and decision engine."""
    context: ContextConfig = field(default_factory=ContextConfig)
    """History sent to crews."""
    processing: ProcessingConfig = field(default_factory=ProcessingConfig)
    """Debounce, retries, breaker, workers."""
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    """Local routing rules."""
    health: HealthConfig = field(default_factory=HealthConfig)
    """Health probes."""
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    """Console refresh."""
    crews: tuple[CrewConfig, ...] = ()
    """Per-crew back-ends; a crew not listed goes to ``mcp_crew`` over HTTP."""
    source_path: str | None = None
    """The file this was loaded from; None when built from defaults or a mapping."""

    def crew(self, name: str) -> CrewConfig | None:
        """The ``crews:`` entry called ``name``, or None (then ``mcp_crew`` serves it)."""
        for crew in self.crews:
            if crew.name == name:
                return crew
        return None

    @property
    def known_crews(self) -> tuple[str, ...]:
        """Default crew, rule crews and ``crews:`` names; unique, in that order."""
        names = [self.routing.default_crew]
        names += [rule.crew for rule in self.routing.rules]
        names += [crew.name for crew in self.crews]
        return tuple(dict.fromkeys(names))


# --------------------------------------------------------------------------------------------
# Value parsers: each takes (dotted key, raw value) and returns the typed value or raises
# --------------------------------------------------------------------------------------------

Parser = Callable[[str, Any], Any]


def _kind(value: Any) -> str:
    """A type name for error messages; never the value itself (it may be a secret)."""
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def _shown(value: str) -> str:
    """A non-secret value quoted for an error message, shortened."""
    return repr(value if len(value) <= 40 else value[:37] + "...")


def _string(*, required: bool = False, strip: bool = False) -> Parser:
    def parse(key: str, value: Any) -> str:
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a string, not {_kind(value)}")
        if strip:
            value = value.strip()
        if required and not value.strip():
            raise ConfigError(key, "must not be empty")
        return value

    return parse


def _integer(minimum: int, maximum: int | None = None) -> Parser:
    def parse(key: str, value: Any) -> int:
        # bool is an int subclass: `port: true` must not become 1.
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"must be an integer, not {_kind(value)}")
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise ConfigError(key, f"must be {bounds}")
        return value

    return parse


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(key, f"must be a number, not {_kind(value)}")
    try:
        number = float(value)  # an int too large for a float raises OverflowError
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ConfigError(key, "must be a finite number")
    return number


def _seconds(*, positive: bool = False) -> Parser:
    """A duration in seconds (decimals allowed); timeouts must be > 0, others >= 0."""

    def parse(key: str, value: Any) -> float:
        seconds = _number(key, value)
        if positive and seconds <= 0:
            raise ConfigError(key, "must be a number of seconds > 0")
        if seconds < 0:
            raise ConfigError(key, "must be a number of seconds >= 0")
        return seconds

    return parse


def _ratio(key: str, value: Any) -> float:
    ratio = _number(key, value)
    if not 0 < ratio <= 1:
        raise ConfigError(key, "must be greater than 0 and at most 1")
    return ratio


def _boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, f"must be true or false, not {_kind(value)}")
    return value


def _choice(options: tuple[str, ...], *, upper: bool = False) -> Parser:
    def parse(key: str, value: Any) -> str:
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a string, not {_kind(value)}")
        text = value.strip().upper() if upper else value.strip()
        if text not in options:
            raise ConfigError(key, f"must be one of {', '.join(options)} (got {_shown(value)})")
        return text

    return parse


def _items(key: str, value: Any) -> list[tuple[str, Any]]:
    """A YAML scalar or list as a list of (dotted key, item); lets rules say `channel: whatsapp`."""
    if isinstance(value, list | tuple):
        return [(f"{key}[{index}]", item) for index, item in enumerate(value)]
    if isinstance(value, Mapping):
        raise ConfigError(key, "must be a value or a list, not a mapping")
    return [(key, value)]


def _string_list(key: str, value: Any) -> tuple[str, ...]:
    parse = _string(required=True, strip=True)
    return tuple(parse(item_key, item) for item_key, item in _items(key, value))


def _id_list(key: str, value: Any) -> tuple[int, ...]:
    parse = _integer(1)
    return tuple(parse(item_key, item) for item_key, item in _items(key, value))


def _channel_list(key: str, value: Any) -> tuple[str, ...]:
    parse = _choice(CHANNELS)
    # Accept `WhatsApp` as well as `whatsapp`; store the canonical lower-case name.
    lowered = [(k, v.lower()) if isinstance(v, str) else (k, v) for k, v in _items(key, value)]
    return tuple(parse(item_key, item) for item_key, item in lowered)


def _regex(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(key, f"must be a string, not {_kind(value)}")
    if not value:
        raise ConfigError(key, "must not be empty")
    try:
        re.compile(value)
    except re.error as exc:
        where = f" at position {exc.pos}" if exc.pos is not None else ""
        raise ConfigError(key, f"invalid regular expression: {exc.msg}{where}") from None
    except (RecursionError, OverflowError, ValueError):
        raise ConfigError(key, "invalid regular expression: too complex") from None
    return value


def _url(*, outbound: bool = True) -> Parser:
    def parse(key: str, value: Any) -> str:
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a string, not {_kind(value)}")
        url = value.strip()
        if outbound:
            validate_outbound_url(key, url)
        elif url:
            _check_http_url(key, url)
        return url

    return parse


def _secret_list(key: str, value: Any) -> tuple[str, ...]:
    """``webhook_secret``: one string (``""`` = none) or a list of them during a rotation."""
    if isinstance(value, str):
        return (value,) if value else ()
    if not isinstance(value, list | tuple):
        raise ConfigError(key, f"must be a string or a list of strings, not {_kind(value)}")
    secrets = []
    for item_key, item in _items(key, value):
        if not isinstance(item, str):
            raise ConfigError(item_key, f"must be a string, not {_kind(item)}")
        if not item:
            raise ConfigError(item_key, "must not be empty")
        secrets.append(item)
    return tuple(secrets)


def _headers(key: str, value: Any) -> tuple[tuple[str, str], ...]:
    mapping = _mapping(key, value)
    pairs = []
    for name, header_value in mapping.items():
        item_key = f"{key}.{name}"
        if not name or any(ch in name for ch in ":\r\n ") or not name.isprintable():
            raise ConfigError(item_key, "is not a valid header name")
        if not isinstance(header_value, str):
            raise ConfigError(item_key, f"must be a string, not {_kind(header_value)}")
        # A line break would let a value inject further headers.
        if "\r" in header_value or "\n" in header_value:
            raise ConfigError(item_key, "must not contain line breaks")
        pairs.append((name, header_value))
    return tuple(pairs)


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


def _mapping(key: str, value: Any) -> Mapping[str, Any]:
    """A YAML mapping with string keys; an empty YAML value (None) counts as ``{}``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(key or "config", f"must be a mapping, not {_kind(value)}")
    for name in value:
        if not isinstance(name, str):
            raise ConfigError(key or "config", f"keys must be strings, not {_kind(name)}")
    return value


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _build(
    cls: type,
    key: str,
    raw: Any,
    spec: Mapping[str, Parser],
    *,
    required: tuple[str, ...] = (),
    renames: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Any:
    """Parse ``raw`` with one parser per file key and build ``cls``.

    Unknown keys are errors so that a typo is never silently ignored. A key present with an
    empty value (``timeout_seconds:``) keeps the default, which is also how a JSON ``null``
    sent to ``POST /config`` resets a value.
    """
    section = _mapping(key, raw)
    kwargs: dict[str, Any] = dict(extra or {})
    for name, value in section.items():
        parse = spec.get(name)
        if parse is None:
            raise ConfigError(_join(key, name), "unknown key")
        if value is not None:
            kwargs[(renames or {}).get(name, name)] = parse(_join(key, name), value)
    for name in required:
        if name not in kwargs:
            raise ConfigError(_join(key, name), "is required")
    return cls(**kwargs)


_SERVER: dict[str, Parser] = {
    "host": _string(required=True, strip=True),
    "port": _integer(1, 65535),
    "public_url": _url(outbound=False),
    "admin_token": _string(),
    "max_body_bytes": _integer(1),
    "request_timeout_seconds": _seconds(positive=True),
    "shutdown_grace_seconds": _seconds(positive=True),
}

_STATE: dict[str, Parser] = {"path": _string(required=True, strip=True)}

_LOGGING: dict[str, Parser] = {
    "dir": _string(required=True, strip=True),
    "level": _choice(LOG_LEVELS, upper=True),
    "json": _boolean,
    "max_bytes": _integer(0),
    "backup_count": _integer(0),
}

_CHATWOOT: dict[str, Parser] = {
    "api_url": _url(),
    "api_access_token": _string(),
    "webhook_secret": _secret_list,
    "allow_unsigned": _boolean,
    "inbox_ids": _id_list,
    "timeout_seconds": _seconds(positive=True),
    "signature_tolerance_seconds": _seconds(positive=True),
    "bot_user_id": _integer(1),
    "typing_indicator": _boolean,
    "typing_delay_seconds": _seconds(),
    "max_in_flight": _integer(1),
}

_MCP_CREW: dict[str, Parser] = {
    "api_url": _url(),
    "api_key": _string(),
    "decision_engine_url": _url(),
    "dialect": _choice(DIALECTS),
    "timeout_seconds": _seconds(positive=True),
    "decision_timeout_seconds": _seconds(positive=True),
    "callback_timeout_seconds": _seconds(positive=True),
    "max_in_flight": _integer(1),
}

_CONTEXT: dict[str, Parser] = {"max_messages": _integer(0)}

_PROCESSING: dict[str, Parser] = {
    "debounce_seconds": _seconds(),
    "debounce_max_seconds": _seconds(),
    "max_attempts": _integer(1),
    "retry_base_seconds": _seconds(),
    "retry_max_seconds": _seconds(),
    "lease_seconds": _seconds(positive=True),
    "breaker_failure_ratio": _ratio,
    "breaker_min_requests": _integer(0),
    "breaker_open_seconds": _seconds(),
    "concurrency": _integer(1),
    "failure_note": _boolean,
    "failure_handoff": _boolean,
    "workers_enabled": _boolean,
}

_RULE: dict[str, Parser] = {
    "crew": _string(required=True, strip=True),
    "channel": _channel_list,
    "inbox_id": _id_list,
    "keywords": _string_list,
    "pattern": _regex,
    "labels": _string_list,
}

_ANSWER: dict[str, Parser] = {
    "keywords": _string_list,
    "reply": _string(required=True),
}

_HEALTH: dict[str, Parser] = {"probe_interval_seconds": _seconds(positive=True)}

_CONSOLE: dict[str, Parser] = {"refresh_seconds": _seconds(positive=True)}


def _processing(raw: Any) -> ProcessingConfig:
    processing: ProcessingConfig = _build(ProcessingConfig, "processing", raw, _PROCESSING)
    if processing.retry_base_seconds > processing.retry_max_seconds:
        raise ConfigError("processing.retry_base_seconds", "must not exceed retry_max_seconds")
    if processing.debounce_max_seconds < processing.debounce_seconds:
        raise ConfigError(
            "processing.debounce_max_seconds", "must not be less than debounce_seconds"
        )
    return processing


def _rule(key: str, raw: Any) -> RoutingRule:
    rule: RoutingRule = _build(RoutingRule, key, raw, _RULE, required=("crew",))
    # A rule "matches on any of" its conditions; one without conditions is a mistake
    # (it would either swallow every message or never fire).
    if not (rule.channel or rule.inbox_id or rule.keywords or rule.pattern or rule.labels):
        raise ConfigError(key, "needs at least one of channel, inbox_id, keywords, pattern, labels")
    return rule


def _rules(key: str, value: Any) -> tuple[RoutingRule, ...]:
    if not isinstance(value, list | tuple):
        raise ConfigError(key, f"must be a list of rules, not {_kind(value)}")
    return tuple(_rule(f"{key}[{index}]", item) for index, item in enumerate(value))


_ROUTING: dict[str, Parser] = {
    "default_crew": _string(required=True, strip=True),
    "rules": _rules,
}


def _answers(key: str, value: Any) -> tuple[LocalAnswer, ...]:
    if not isinstance(value, list | tuple):
        raise ConfigError(key, f"must be a list of answers, not {_kind(value)}")
    return tuple(
        _build(LocalAnswer, f"{key}[{index}]", item, _ANSWER, required=("keywords", "reply"))
        for index, item in enumerate(value)
    )


_CREW: dict[str, Parser] = {
    "backend": _choice(BACKENDS),
    "url": _url(),
    "token": _string(),
    "tool": _string(strip=True),
    "status_tool": _string(strip=True),
    "headers": _headers,
    "timeout_seconds": _seconds(positive=True),
    "deadline_seconds": _seconds(positive=True),
    "poll_interval_seconds": _seconds(positive=True),
    "dialect": _choice(DIALECTS),
    "answers": _answers,
    "handoff_keywords": _string_list,
    "handoff_message": _string(),
    "fallback_reply": _string(),
    "max_in_flight": _integer(1),
}


def _crew(name: str, raw: Any) -> CrewConfig:
    key = f"crews.{name}"
    crew: CrewConfig = _build(
        CrewConfig, key, raw, _CREW, required=("backend",), extra={"name": name}
    )
    if crew.backend in REMOTE_BACKENDS:
        validate_outbound_url(f"{key}.url", crew.url, allow_empty=False)
    if crew.backend == "mcp" and not crew.tool:
        raise ConfigError(f"{key}.tool", "must not be empty for an mcp crew")
    if crew.backend == "local" and not (crew.answers or crew.fallback_reply):
        raise ConfigError(
            f"{key}.answers", "a local crew needs at least one answer or a fallback_reply"
        )
    return crew


def _crews(raw: Any) -> tuple[CrewConfig, ...]:
    crews = []
    for name, settings in _mapping("crews", raw).items():
        if not name.strip():
            raise ConfigError("crews", "crew names must not be empty")
        if any(crew.name == name.strip() for crew in crews):
            raise ConfigError(f"crews.{name.strip()}", "defined twice")
        crews.append(_crew(name.strip(), settings))
    return tuple(crews)


# Top-level sections and how each is built from its raw mapping.
_SECTIONS: dict[str, Callable[[Any], Any]] = {
    "server": lambda raw: _build(ServerConfig, "server", raw, _SERVER),
    "state": lambda raw: _build(StateConfig, "state", raw, _STATE),
    "logging": lambda raw: _build(LoggingConfig, "logging", raw, _LOGGING),
    "chatwoot": lambda raw: _build(
        ChatwootConfig, "chatwoot", raw, _CHATWOOT, renames={"webhook_secret": "webhook_secrets"}
    ),
    "mcp_crew": lambda raw: _build(McpCrewConfig, "mcp_crew", raw, _MCP_CREW),
    "context": lambda raw: _build(ContextConfig, "context", raw, _CONTEXT),
    "processing": _processing,
    "routing": lambda raw: _build(RoutingConfig, "routing", raw, _ROUTING),
    "crews": _crews,
    "health": lambda raw: _build(HealthConfig, "health", raw, _HEALTH),
    "console": lambda raw: _build(ConsoleConfig, "console", raw, _CONSOLE),
}


# --------------------------------------------------------------------------------------------
# Environment overrides (CONTRACT §2: the seed's variable names, kept exactly)
# --------------------------------------------------------------------------------------------


def _env_text(name: str, key: str, text: str) -> str:
    return text


def _env_int(name: str, key: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(key, f"must be an integer (from {name})") from None


def _env_list(name: str, key: str, text: str) -> list[str]:
    # Several secrets during a rotation: CHATWOOT_WEBHOOK_SECRET=new,old
    return [part.strip() for part in text.split(",") if part.strip()]


ENV_OVERRIDES: tuple[tuple[str, str, str, Callable[[str, str, str], Any]], ...] = (
    ("SIDECAR_HOST", "server", "host", _env_text),
    ("SIDECAR_PORT", "server", "port", _env_int),
    ("SIDECAR_PUBLIC_URL", "server", "public_url", _env_text),
    ("SIDECAR_ADMIN_TOKEN", "server", "admin_token", _env_text),
    ("SIDECAR_DB", "state", "path", _env_text),
    ("SIDECAR_LOG_DIR", "logging", "dir", _env_text),
    ("CHATWOOT_API_URL", "chatwoot", "api_url", _env_text),
    ("CHATWOOT_API_ACCESS_TOKEN", "chatwoot", "api_access_token", _env_text),
    ("CHATWOOT_WEBHOOK_SECRET", "chatwoot", "webhook_secret", _env_list),
    ("MCP_CREW_API_URL", "mcp_crew", "api_url", _env_text),
    ("MCP_CREW_API_KEY", "mcp_crew", "api_key", _env_text),
    ("MCP_CREW_DECISION_ENGINE_URL", "mcp_crew", "decision_engine_url", _env_text),
    ("MAX_CONTEXT_MESSAGES", "context", "max_messages", _env_int),
)
"""(variable, section, file key, converter) for every environment override."""


def _apply_env(sections: dict[str, Any], env: Mapping[str, str]) -> None:
    """Overlay the environment on the file's sections (env wins).

    An empty variable counts as unset: compose files often pass ``FOO=${FOO:-}``, and that
    must not wipe a value written in config.yaml.
    """
    for name, section, file_key, convert in ENV_OVERRIDES:
        text = (env.get(name) or "").strip()
        if not text:
            continue
        value = convert(name, f"{section}.{file_key}", text)
        current = dict(_mapping(section, sections.get(section)))
        current[file_key] = value
        sections[section] = current


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def config_from_mapping(
    raw: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    source_path: str | None = None,
) -> Config:
    """Validate a config.yaml-shaped mapping plus environment overrides into a ``Config``.

    ``env`` defaults to ``os.environ``; pass ``{}`` to ignore the environment. ``raw`` is not
    modified.
    """
    env = os.environ if env is None else env
    sections = dict(_mapping("", raw))
    for name in sections:
        if name not in _SECTIONS:
            raise ConfigError(name, "unknown key")
    _apply_env(sections, env)
    built = {name: _SECTIONS[name](value) for name, value in sections.items() if value is not None}
    return Config(**built, source_path=source_path)


def _resolve_path(path: str | None, env: Mapping[str, str]) -> tuple[Path, bool]:
    """The config file to read, and whether it was asked for explicitly."""
    explicit = path or env.get(CONFIG_PATH_ENV, "").strip()
    if explicit:
        return Path(explicit), True
    return Path(DEFAULT_CONFIG_PATH), False


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges are allowed to be overridden
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue  # unhashable key: the base class reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
        return super().construct_mapping(node, deep=deep)


def _parse_yaml(label: str, text: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: no object tags
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        # Only the problem text: the error's snippet of the line could hold a secret.
        raise ConfigError(label, f"invalid YAML{where}: {exc.problem or exc.context}") from None
    except yaml.YAMLError:
        raise ConfigError(label, "invalid YAML") from None
    except RecursionError:
        raise ConfigError(label, "invalid YAML: nested too deeply") from None


def load_raw(
    path: str | None = None, env: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], str | None]:
    """Read the config file as a plain mapping, without validating it.

    Returns the mapping and the path read (None when the optional ``./config.yaml`` was
    absent, which means all defaults). ``POST /config`` merges its patch into this mapping
    before validating with :func:`config_from_mapping`.
    """
    env = os.environ if env is None else env
    target, explicit = _resolve_path(path, env)
    label = str(target)
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise ConfigError(label, "file not found") from None
        return {}, None
    except UnicodeDecodeError:
        raise ConfigError(label, "not valid UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(
            label, f"cannot read file: {exc.strerror or type(exc).__name__}"
        ) from None
    data = _parse_yaml(label, text)
    if data is None:
        return {}, label
    if not isinstance(data, dict):
        raise ConfigError(label, f"top level must be a mapping of sections, not {_kind(data)}")
    return data, label


def load_config(path: str | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load and validate the config.

    The file is ``path``, else ``$SIDECAR_CONFIG``, else ``./config.yaml``. A missing file is
    an error only when asked for explicitly; a missing ``./config.yaml`` means all defaults.
    ``env`` defaults to ``os.environ`` and overrides the file. Raises only ``ConfigError``.
    """
    env = os.environ if env is None else env
    raw, source = load_raw(path, env)
    return config_from_mapping(raw, env, source_path=source)


def deep_merge(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``patch``: mappings merge recursively, lists and scalars replace.

    Neither argument is modified; the result shares no mutable part with them.
    """
    merged: dict[str, Any] = {key: copy.deepcopy(value) for key, value in base.items()}
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# --------------------------------------------------------------------------------------------
# Back to the file's shape, plain or masked
# --------------------------------------------------------------------------------------------


def _mask(secret: str) -> str:
    """``****`` plus the last 4 characters; short secrets show nothing of themselves."""
    if not secret:
        return ""
    if len(secret) <= 4:
        return "****"
    return "****" + secret[-4:]


def _is_secret_header(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_HEADER_WORDS)


def _plain(value: Any) -> Any:
    """Dataclasses to dicts and tuples to lists, recursively."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    return value


def _rule_dict(rule: RoutingRule) -> dict[str, Any]:
    # Only the conditions the rule uses, as an operator would write it.
    return {name: value for name, value in _plain(rule).items() if value not in ((), [], None)}


def _crew_dict(crew: CrewConfig, show: Callable[[str], str]) -> dict[str, Any]:
    settings = _plain(crew)
    del settings["name"]
    settings["token"] = show(crew.token)
    settings["headers"] = {
        name: show(value) if _is_secret_header(name) else value for name, value in crew.headers
    }
    return settings


def _renamed(section: dict[str, Any], old: str, new: str, value: Any) -> dict[str, Any]:
    """``section`` with key ``old`` replaced by ``new: value`` at the same position."""
    return {
        (new if name == old else name): (value if name == old else v) for name, v in section.items()
    }


def _to_dict(config: Config, show: Callable[[str], str]) -> dict[str, Any]:
    out: dict[str, Any] = {name: _plain(getattr(config, name)) for name in _SECTIONS}
    out["server"]["admin_token"] = show(config.server.admin_token)
    out["chatwoot"]["api_access_token"] = show(config.chatwoot.api_access_token)
    secrets = [show(secret) for secret in config.chatwoot.webhook_secrets]
    # The file key is the singular `webhook_secret`: one secret is written as a string, as
    # operators usually do, several as a list.
    written = secrets if len(secrets) > 1 else (secrets[0] if secrets else "")
    out["chatwoot"] = _renamed(out["chatwoot"], "webhook_secrets", "webhook_secret", written)
    out["mcp_crew"]["api_key"] = show(config.mcp_crew.api_key)
    out["routing"]["rules"] = [_rule_dict(rule) for rule in config.routing.rules]
    out["crews"] = {crew.name: _crew_dict(crew, show) for crew in config.crews}
    return out


def config_to_dict(config: Config) -> dict[str, Any]:
    """The config as a plain YAML/JSON-able dict in config.yaml's shape (secrets included)."""
    return _to_dict(config, lambda secret: secret)


def masked_config_dict(config: Config) -> dict[str, Any]:
    """Like :func:`config_to_dict`, with every secret shown as ``****`` plus its last 4 chars."""
    return _to_dict(config, _mask)


def secret_values(config: Config) -> list[str]:
    """Every non-empty secret in the config, for log and output redaction."""
    candidates = [
        config.server.admin_token,
        config.chatwoot.api_access_token,
        *config.chatwoot.webhook_secrets,
        config.mcp_crew.api_key,
    ]
    for crew in config.crews:
        candidates.append(crew.token)
        candidates += [value for name, value in crew.headers if _is_secret_header(name)]
    return list(dict.fromkeys(secret for secret in candidates if secret))


# --------------------------------------------------------------------------------------------
# Outbound URL checks
# --------------------------------------------------------------------------------------------

_EC2_IPV6_METADATA = ipaddress.IPv6Address("fd00:ec2::254")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _check_http_url(key: str, url: str) -> str:
    """Scheme, host and no credentials; returns the host. Never echoes the URL (it may hold a secret)."""
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise ConfigError(key, "must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        _ = parts.port  # parsing the port is the check
    except ValueError:
        raise ConfigError(key, "is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ConfigError(key, "must be an http:// or https:// URL")
    if "@" in parts.netloc:
        raise ConfigError(key, "must not contain credentials (user:password@)")
    if not parts.hostname:
        raise ConfigError(key, "must include a host")
    return parts.hostname


def _literal_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host names literally, in any form a resolver would accept, else None."""
    # Full-width digits and dots are folded by IDNA into ASCII ones, so fold them first.
    host = unicodedata.normalize("NFKC", host).replace("\u3002", ".").rstrip(".")
    host = host.split("%", 1)[0]  # IPv6 zone id (fe80::1%eth0)
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if ":" in host:
        return None
    try:
        # inet_aton knows the legacy forms resolvers accept: 2852039166, 0xa9fea9fe, 169.254.43518.
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def _refused(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip == _EC2_IPV6_METADATA:
            return True
        embedded = ip.ipv4_mapped
        if embedded is None and (ip in _NAT64 or (ip.packed[:12] == bytes(12) and int(ip) > 1)):
            embedded = ipaddress.IPv4Address(ip.packed[12:])  # NAT64 or IPv4-compatible form
        if embedded is not None:
            return embedded.is_link_local
    return ip.is_link_local


def validate_outbound_url(key: str, url: str, *, allow_empty: bool = True) -> None:
    """Refuse a URL the sidecar must not call; raises ``ConfigError`` naming ``key``.

    It must be http or https with a host and without ``user:password@``. Literal link-local
    and cloud-metadata addresses (169.254.0.0/16, fe80::/10, fd00:ec2::254, also inside
    IPv4-mapped IPv6) are refused: a crew URL set through ``POST /config`` must not turn the
    sidecar into a way to read instance credentials. Loopback and private addresses are
    allowed, because the sidecar runs next to Chatwoot.
    """
    if not isinstance(url, str):
        raise ConfigError(key, f"must be a string, not {_kind(url)}")
    if not url.strip():
        if allow_empty:
            return
        raise ConfigError(key, "is required")
    host = _check_http_url(key, url.strip())
    ip = _literal_ip(host)
    if ip is not None and _refused(ip):
        raise ConfigError(key, "link-local/metadata address refused")
