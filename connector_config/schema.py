"""Provides the configuration's schema: every key of config.yaml, declared once.

Each section is a frozen pydantic dataclass: the attribute docstrings document the keys, the
annotations carry the checks (:mod:`connector_config.fields`), the defaults are the defaults,
and ``extra="forbid"`` makes a typo an error naming the key. The few rules that look at
several keys at once are the ``model_validator`` methods below. Being real dataclasses, the
records compare, hash and pickle as values and work with ``dataclasses.replace`` (which
validates again).

A key present with an empty value (``timeout_seconds:``) keeps its default; that is also how a
JSON ``null`` sent to ``POST /config`` resets a value.

Over 400 lines on purpose: it is the whole config.yaml, two lines per key (declaration and
documentation), and splitting it would scatter what a reader comes here to see at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, get_args

from pydantic import BeforeValidator, Field, model_validator

from connector_config.errors import Refused, kind
from connector_config.fields import (
    Backend,
    Channel,
    DatabaseUrl,
    Dialect,
    Flag,
    Fraction,
    Headers,
    HttpUrl,
    Int,
    LogLevel,
    Message,
    Name,
    OneOrMany,
    OutboundUrl,
    ProcessCount,
    Ratio,
    Regex,
    Seconds,
    Secrets,
    Text,
    Word,
    _folding,
)
from connector_config.lifecycle import RetentionConfig
from connector_config.records import _Section, section
from connector_config.team import (
    BudgetsConfig,
    ContactsConfig,
    HandoffConfig,
    Inboxes,
    Mode,
    ReplyPacing,
    RuleMode,
)

CHANNELS: tuple[str, ...] = get_args(Channel)
"""Channel names that routing rules may use (CONTRACT §2)."""

DIALECTS: tuple[str, ...] = get_args(Dialect)
"""Wire formats spoken to MCP-Crew (CONTRACT §5)."""

BACKENDS: tuple[str, ...] = get_args(Backend)
"""Kinds of crew back-end a ``crews:`` entry may name."""

REMOTE_BACKENDS: tuple[str, ...] = ("http", "mcp", "crewai_amp")
"""Back-ends that are reached over the network and therefore need a ``url``."""

LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)
"""Accepted values of ``logging.level``."""

@section
class ServerConfig(_Section):
    """The sidecar's own HTTP server."""

    host: Name = "0.0.0.0"
    """Listen address (env ``SIDECAR_HOST``)."""
    port: Int(1, 65535) = 5000
    """Listen port, 1..65535 (env ``SIDECAR_PORT``)."""
    public_url: HttpUrl = ""
    """How MCP-Crew reaches the sidecar for async replies (env ``SIDECAR_PUBLIC_URL``)."""
    admin_token: Text = ""
    """Bearer token for ``/config``; empty means ``/config`` answers 403 (env ``SIDECAR_ADMIN_TOKEN``)."""
    max_body_bytes: Int(1) = 1048576
    """Largest accepted webhook body; bigger bodies get 413."""
    request_timeout_seconds: Seconds(positive=True) = 10.0
    """A request whose body has not fully arrived after this long is cut off."""
    shutdown_grace_seconds: Seconds(positive=True) = 15.0
    """On SIGTERM/SIGINT: how long requests and crew work in progress may take to finish."""
    processes: ProcessCount = 1
    """1: one process does everything. N >= 2 (or ``auto``: one per CPU): ``processing.worker_processes``
    of them run the queue and the others answer HTTP on the same port, sharing the state."""


@section
class StateConfig(_Section):
    """Where the shared state lives: a SQLite file (default) or a PostgreSQL database."""

    path: Name = "data/connector.db"
    """The SQLite file shared with the console (env ``SIDECAR_DB``); unused with ``database_url``."""
    database_url: DatabaseUrl = ""
    """Empty: SQLite at ``path``. ``postgresql://user:password@host:port/db``: the state lives in
    PostgreSQL, shared by every sidecar process and replica and read by the console (env
    ``SIDECAR_DATABASE_URL``; a secret: masked in ``GET /config``, never logged)."""
    pool_size: Int(1, 64) = 8
    """With ``database_url``: PostgreSQL connections (and threads) per sidecar process."""

    @property
    def location(self) -> str:
        """What ``state.open_service`` and ``state.open_database`` take: the URL, else the path."""
        return self.database_url or self.path


@section
class LoggingConfig(_Section):
    """Log files."""

    dir: Name = "logs"
    """Directory of ``chatwoot_mcp_connector.log`` (env ``SIDECAR_LOG_DIR``)."""
    level: Annotated[LogLevel, _folding(str.upper)] = "INFO"
    """One of DEBUG, INFO, WARNING, ERROR, CRITICAL."""
    json: Flag = False
    """Write one JSON object per line instead of plain text."""
    max_bytes: Int(0) = 10485760
    """Rotate the file when it reaches this size; 0 never rotates."""
    backup_count: Int(0) = 5
    """How many rotated files to keep."""


@section
class ChatwootConfig(_Section):
    """How the sidecar talks to Chatwoot and checks its webhooks."""

    api_url: OutboundUrl = ""
    """Chatwoot base URL, with or without a trailing ``/api`` (env ``CHATWOOT_API_URL``)."""
    api_access_token: Text = ""
    """Agent-bot or user token, sent as ``api_access_token`` (env ``CHATWOOT_API_ACCESS_TOKEN``)."""
    webhook_secrets: Secrets = Field(default=(), validation_alias="webhook_secret")
    """Signing secrets; several during a rotation (file key ``webhook_secret``, a string or a list)."""
    allow_unsigned: Flag = False
    """Accept unsigned webhooks; only for Chatwoot older than 4.12."""
    inbox_ids: Annotated[tuple[Int(1), ...], OneOrMany] = ()
    """Inboxes the bot serves; empty means all."""
    timeout_seconds: Seconds(positive=True) = 10.0
    """Timeout of one Chatwoot API call."""
    signature_tolerance_seconds: Seconds(positive=True) = 300.0
    """How far a signed timestamp may be from now before the delivery is refused as stale."""
    bot_user_id: Int(1) | None = None
    """Id of the Chatwoot user whose token the sidecar uses (user-token setups)."""
    typing_indicator: Flag = True
    """Show "typing…" in the conversation while a crew works."""
    typing_delay_seconds: Seconds() = 1.0
    """Show "typing…" only once a crew has been working this long (a quick answer needs none)."""
    max_in_flight: Int(1) = 64
    """Most Chatwoot API calls at the same time (waiting for a free one is not part of a timeout)."""

    @property
    def api_base(self) -> str:
        """``api_url`` without a trailing ``/`` and without a trailing ``/api``."""
        base = self.api_url.strip().rstrip("/")
        if base.endswith("/api"):
            base = base[: -len("/api")].rstrip("/")
        return base


@section
class McpCrewConfig(_Section):
    """The default crew back-end (MCP-Crew over HTTP) and the optional decision engine."""

    api_url: OutboundUrl = ""
    """Where crew requests go for crews not listed under ``crews:`` (env ``MCP_CREW_API_URL``)."""
    api_key: Text = ""
    """Sent as ``Authorization: Bearer …``; also authenticates callbacks (env ``MCP_CREW_API_KEY``)."""
    decision_engine_url: OutboundUrl = ""
    """Empty means the local rules decide (env ``MCP_CREW_DECISION_ENGINE_URL``)."""
    dialect: Annotated[Dialect, _folding(str)] = "connector-v1"
    """``connector-v1`` or ``chatwootai``."""
    timeout_seconds: Seconds(positive=True) = 30.0
    """Timeout of one crew request."""
    decision_timeout_seconds: Seconds(positive=True) = 2.0
    """Timeout of one decision-engine call; on expiry the local rules decide."""
    callback_timeout_seconds: Seconds(positive=True) = 600.0
    """How long to wait for the callback after a ``202`` before the attempt counts as failed."""
    max_in_flight: Int(1) = 4096
    """Most requests in flight to MCP-Crew (every crew not listed under ``crews:``) at once."""


@section
class ContextConfig(_Section):
    """Conversation history sent with each crew request."""

    max_messages: Int(0) = 10
    """Messages of history per request (env ``MAX_CONTEXT_MESSAGES``)."""


@section
class ProcessingConfig(_Section):
    """Debounce, retries, leases, circuit breaker and workers."""

    debounce_seconds: Seconds() = 2.0
    """Quiet time after a customer message before the burst is answered."""
    debounce_max_seconds: Seconds() = 10.0
    """Cap of a sliding burst window, so a chatty customer still gets an answer."""
    max_attempts: Int(1) = 6
    """Crew attempts before a dead letter."""
    retry_base_seconds: Seconds() = 5.0
    """Smallest backoff (exponential, full jitter)."""
    retry_max_seconds: Seconds() = 1800.0
    """Largest backoff."""
    lease_seconds: Seconds(positive=True) = 60.0
    """How long a claimed job stays claimed before another worker may take it after a crash."""
    breaker_failure_ratio: Ratio = 0.7
    """Failure share, in (0, 1], that opens a back-end's circuit breaker."""
    breaker_min_requests: Int(0) = 10
    """Requests seen before the ratio counts; 0 switches the breaker off."""
    breaker_open_seconds: Seconds() = 30.0
    """How long an open breaker refuses calls before a trial request."""
    concurrency: Int(1) = 4096
    """Jobs (conversations) a worker handles at the same time, including those waiting for a crew."""
    failure_note: Flag = True
    """On a final failure, post a private note saying why."""
    failure_handoff: Flag = True
    """On a final failure, hand the conversation to a human."""
    worker_processes: Int(1, 32) = 1
    """With ``server.processes`` >= 2: how many of the processes run the queue worker."""
    workers_enabled: Flag = True
    """Run the background workers (false: intake only, e.g. for tests)."""
    echo_grace_seconds: Seconds(positive=True) = 10.0
    """After a message's create call dropped, how long to wait for Chatwoot's echo webhook (the
    only evidence an agent-bot token can get) before posting it again."""

    @model_validator(mode="after")
    def _windows_are_ordered(self) -> ProcessingConfig:
        if self.retry_base_seconds > self.retry_max_seconds:
            raise Refused("must not exceed retry_max_seconds", at="retry_base_seconds")
        if self.debounce_max_seconds < self.debounce_seconds:
            raise Refused("must not be less than debounce_seconds", at="debounce_max_seconds")
        return self


Words = Annotated[tuple[Name, ...], OneOrMany]
"""One word or a list of them (keywords, labels)."""


@section
class RoutingRule(_Section):
    """One routing rule; it matches when any of its conditions matches."""

    crew: Name
    """Crew chosen when the rule matches."""
    channel: Annotated[tuple[Annotated[Channel, _folding(str.lower)], ...], OneOrMany] = ()
    """Channel names (see ``CHANNELS``)."""
    inbox_id: Annotated[tuple[Int(1), ...], OneOrMany] = ()
    """Chatwoot inbox ids."""
    keywords: Words = ()
    """Any of these words, case- and accent-insensitive."""
    pattern: Regex | None = None
    """Regular expression searched in the message (checked to compile)."""
    labels: Words = ()
    """Conversation labels."""
    name: Name | None = None
    """How analytics and the console call this rule. Empty: ``rule N`` (its position)."""
    mode: RuleMode = None
    """``auto``, ``draft`` or ``shadow`` for this rule's conversations. Empty: the inbox's mode,
    else ``routing.mode``."""
    shadow_crew: Name | None = None
    """Also asked, beside ``crew``, on the same messages; its answer is only recorded (console,
    metrics), never sent: for trying a new crew on live traffic."""
    handoff_team_id: Int(1) | None = None
    """Team assigned when this rule's conversations go to a human. Empty: ``handoff.team_id``."""

    @model_validator(mode="after")
    def _has_a_condition(self) -> RoutingRule:
        # A rule "matches on any of" its conditions; one without conditions is a mistake
        # (it would either swallow every message or never fire).
        if not (self.channel or self.inbox_id or self.keywords or self.pattern or self.labels):
            raise Refused("needs at least one of channel, inbox_id, keywords, pattern, labels")
        return self


@section
class RoutingConfig(_Section):
    """Local routing: first matching rule wins, else the default crew."""

    default_crew: Name = "suporte"
    """Crew used when no rule matches."""
    rules: tuple[RoutingRule, ...] = ()
    """Rules in file order."""
    mode: Mode = "auto"
    """Mode of conversations no rule or inbox sets one for (``auto``, ``draft``, ``shadow``)."""
    min_confidence: Fraction = 0.0
    """A decision engine's pick below this confidence goes to a human (``low_confidence``); 0: off."""


@section
class LocalAnswer(_Section):
    """A canned answer of a ``local`` crew."""

    keywords: Words
    """Any of these words triggers the reply."""
    reply: Message
    """Text sent to the customer."""


@section
class CrewConfig(_Section):
    """One entry of ``crews:``: which back-end serves a crew and how."""

    name: Name
    """Crew name (the key under ``crews:``)."""
    backend: Annotated[Backend, _folding(str)]
    """``http``, ``mcp``, ``crewai_amp`` or ``local``."""
    url: OutboundUrl = ""
    """Back-end URL (required except for ``local``)."""
    token: Text = ""
    """Bearer token for the back-end."""
    tool: Word = "handle_message"
    """MCP tool called (``mcp``)."""
    status_tool: Word = ""
    """Optional MCP tool polled for long-running results (``mcp``)."""
    headers: Headers = ()
    """Extra HTTP headers, as (name, value) pairs (a mapping in the file)."""
    timeout_seconds: Seconds(positive=True) = 30.0
    """Timeout of one call."""
    deadline_seconds: Seconds(positive=True) = 600.0
    """Total time allowed for a long-running run (``crewai_amp``, ``mcp`` status polling)."""
    poll_interval_seconds: Seconds(positive=True) = 2.0
    """Pause between status polls."""
    dialect: Annotated[Dialect, _folding(str)] = "connector-v1"
    """Wire format for ``http`` (``connector-v1`` or ``chatwootai``)."""
    answers: tuple[LocalAnswer, ...] = ()
    """Canned answers (``local``)."""
    handoff_keywords: Words = ()
    """Words that hand the conversation to a human (``local``)."""
    handoff_message: Text = ""
    """Told to the customer before a hand-off (``local``)."""
    fallback_reply: Text = ""
    """Reply when no answer matches (``local``)."""
    max_in_flight: Int(1) = 4096
    """Most requests in flight to this crew's back-end at once."""

    @model_validator(mode="after")
    def _backend_has_what_it_needs(self) -> CrewConfig:
        if self.backend in REMOTE_BACKENDS and not self.url:
            raise Refused("is required", at="url")
        if self.backend == "mcp" and not self.tool:
            raise Refused("must not be empty for an mcp crew", at="tool")
        if self.backend == "local" and not (self.answers or self.fallback_reply):
            raise Refused("a local crew needs at least one answer or a fallback_reply", at="answers")
        return self


def _crews_from_file(value: Any) -> Any:
    """``crews:`` is a mapping of names to settings in the file; the name moves into the record."""
    if isinstance(value, list | tuple) and all(isinstance(crew, CrewConfig) for crew in value):
        return value  # already records (a config rebuilt with dataclasses.replace)
    if not isinstance(value, Mapping):
        raise Refused(f"must be a mapping of crew names to their settings, not {kind(value)}")
    crews: dict[str, Any] = {}
    for raw_name, settings in value.items():
        if not isinstance(raw_name, str):
            raise Refused(f"crew names must be strings, not {kind(raw_name)}")
        name = raw_name.strip()
        if not name:
            raise Refused("crew names must not be empty")
        if name in crews:
            raise Refused("defined twice", at=name)
        if isinstance(settings, Mapping) and "name" in settings:
            raise Refused("unknown key", at=f"{name}.name")  # the name is the key, not a setting
        crews[name] = {**settings, "name": name} if isinstance(settings, Mapping) else (
            {"name": name} if settings is None else settings)
    return list(crews.values())


@section
class HealthConfig(_Section):
    """``/health`` peer checks."""

    probe_interval_seconds: Seconds(positive=True) = 15.0
    """How often peers are probed; ``/health`` serves the cached result."""


@section
class ConsoleConfig(_Section):
    """The Textual console."""

    refresh_seconds: Seconds(minimum=0.1, maximum=60) = 1.0
    """How often the console re-reads the database, 0.1 to 60."""


@section
class Config(_Section):
    """The whole effective configuration (the sections in config.yaml's order)."""

    server: ServerConfig = Field(default_factory=ServerConfig)
    """The sidecar's HTTP server."""
    state: StateConfig = Field(default_factory=StateConfig)
    """Where the state lives (SQLite or PostgreSQL)."""
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    """Log files."""
    chatwoot: ChatwootConfig = Field(default_factory=ChatwootConfig)
    """Chatwoot API and webhooks."""
    mcp_crew: McpCrewConfig = Field(default_factory=McpCrewConfig)
    """Default crew back-end and decision engine."""
    context: ContextConfig = Field(default_factory=ContextConfig)
    """History sent to crews."""
    processing: ProcessingConfig = Field(default_factory=ProcessingConfig)
    """Debounce, retries, breaker, workers."""
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    """Local routing rules."""
    crews: Annotated[tuple[CrewConfig, ...], BeforeValidator(_crews_from_file)] = ()
    """Per-crew back-ends; a crew not listed goes to ``mcp_crew`` over HTTP."""
    health: HealthConfig = Field(default_factory=HealthConfig)
    """Health probes."""
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
    """Console refresh."""
    inboxes: Inboxes = Field(default_factory=dict)
    """Per Chatwoot inbox id: its mode and business hours."""
    handoff: HandoffConfig = Field(default_factory=HandoffConfig)
    """What every hand-off carries; the reminder watchdog."""
    budgets: BudgetsConfig = Field(default_factory=BudgetsConfig)
    """Limits that send a conversation to a human."""
    contacts: ContactsConfig = Field(default_factory=ContactsConfig)
    """Who the bot serves (allow / deny lists)."""
    reply_pacing: ReplyPacing = Field(default_factory=ReplyPacing)
    """How long answers are split and paced, per channel."""
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    """How long the state keeps each kind of row, and the background pruning."""
    source_path: str | None = None
    """The file this was loaded from; None when built from defaults or a mapping."""

    @model_validator(mode="before")
    @classmethod
    def _source_path_is_not_a_file_key(cls, data: Any) -> Any:
        # A mapping is a config.yaml document (keyword arguments arrive as ArgsKwargs).
        if isinstance(data, Mapping) and "source_path" in data:
            raise Refused("unknown key", at="source_path")
        return data

    @model_validator(mode="after")
    def _crew_names_are_unique(self) -> Config:
        # The file's mapping cannot repeat a name; records built in code could.
        names = [crew.name for crew in self.crews]
        for index, name in enumerate(names):
            if name in names[:index]:
                raise Refused("defined twice", at=f"crews.{name}")
        return self

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
        names += [rule.shadow_crew for rule in self.routing.rules if rule.shadow_crew]
        names += [crew.name for crew in self.crews]
        return tuple(dict.fromkeys(names))

    @property
    def unserved_crews(self) -> tuple[str, ...]:
        """Crews the routing names that no back-end serves, in routing order.

        A crew is served when it is listed under ``crews:``, or by MCP-Crew over HTTP when
        ``mcp_crew.api_url`` is set (CONTRACT §5). Such a config is legal (the shipped file
        routes to MCP-Crew's crews before its URL is filled in), so this is reported as a
        warning, not refused: a message routed there fails and goes to the dead letters.
        """
        if self.mcp_crew.api_url:
            return ()
        listed = {crew.name for crew in self.crews}
        routed = [self.routing.default_crew, *(rule.crew for rule in self.routing.rules),
                  *(rule.shadow_crew for rule in self.routing.rules if rule.shadow_crew)]
        return tuple(name for name in dict.fromkeys(routed) if name not in listed)
