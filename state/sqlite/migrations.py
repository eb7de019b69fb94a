"""Provides the numbered schema migrations of the connector's SQLite database (sqlite-utils).

Never edit a migration once it has shipped: add a new one. The console compares the
applied names with :data:`MIGRATIONS` to tell an older schema from a current one.
"""

from __future__ import annotations

import json

from sqlite_utils import Database, Migrations

MIGRATIONS = Migrations("connector")

_INITIAL_SCHEMA = [
    # One row per accepted Chatwoot delivery. Both UNIQUE keys are the dedup guarantee:
    # the delivery id covers Chatwoot's retries, the dedup key covers the same message
    # arriving under another delivery id (two webhooks, or Chatwoot's own duplicates).
    """CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY,
        delivery_id TEXT UNIQUE,
        dedup_key TEXT UNIQUE,
        event TEXT NOT NULL,
        outcome TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        received_at REAL NOT NULL,
        account_id INTEGER,
        conversation_id INTEGER,
        message_id INTEGER,
        body TEXT NOT NULL
    )""",
    "CREATE INDEX idx_deliveries_received ON deliveries(received_at)",
    """CREATE TABLE conversations (
        id INTEGER PRIMARY KEY,
        account_id INTEGER NOT NULL,
        conversation_id INTEGER NOT NULL,
        inbox_id INTEGER,
        inbox_name TEXT NOT NULL DEFAULT '',
        channel TEXT NOT NULL DEFAULT '',
        channel_type TEXT NOT NULL DEFAULT '',
        contact_id INTEGER,
        contact_name TEXT NOT NULL DEFAULT '',
        contact_json TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL DEFAULT '',
        assignee_type TEXT,
        assignee_id INTEGER,
        team_id INTEGER,
        labels TEXT NOT NULL DEFAULT '[]',
        can_reply INTEGER NOT NULL DEFAULT 1,
        owner TEXT NOT NULL DEFAULT 'bot',
        owner_reason TEXT NOT NULL DEFAULT '',
        owner_changed_at REAL,
        crew TEXT NOT NULL DEFAULT '',
        last_message_at REAL,
        last_message_preview TEXT NOT NULL DEFAULT '',
        last_message_role TEXT NOT NULL DEFAULT '',
        last_activity_at REAL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        UNIQUE(account_id, conversation_id)
    )""",
    "CREATE INDEX idx_conversations_recent ON conversations(last_message_at DESC)",
    "CREATE INDEX idx_conversations_channel ON conversations(channel, last_message_at DESC)",
    "CREATE INDEX idx_conversations_crew ON conversations(crew, last_message_at DESC)",
    "CREATE INDEX idx_conversations_owner ON conversations(owner, last_message_at DESC)",
    # The conversation's history as the sidecar saw it (customer, bot, agent, notes).
    """CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        account_id INTEGER NOT NULL,
        conversation_id INTEGER NOT NULL,
        message_id INTEGER UNIQUE,
        role TEXT NOT NULL,
        sender_type TEXT NOT NULL DEFAULT '',
        sender_id INTEGER,
        content TEXT NOT NULL DEFAULT '',
        content_type TEXT NOT NULL DEFAULT 'text',
        attachments TEXT NOT NULL DEFAULT '[]',
        private INTEGER NOT NULL DEFAULT 0,
        content_hash TEXT NOT NULL DEFAULT '',
        job_id INTEGER,
        created_at REAL NOT NULL
    )""",
    "CREATE INDEX idx_messages_conversation ON messages(account_id, conversation_id, id)",
    # The durable work queue: one row per crew turn (a debounced burst of messages).
    """CREATE TABLE jobs (
        id INTEGER PRIMARY KEY,
        request_id TEXT NOT NULL UNIQUE,
        account_id INTEGER NOT NULL,
        conversation_id INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN
            ('pending','in_flight','waiting','done','dead','superseded','cancelled','discarded')),
        message_ids TEXT NOT NULL DEFAULT '[]',
        first_message_at REAL NOT NULL,
        run_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        apply_attempts INTEGER NOT NULL DEFAULT 0,
        deadline_at REAL,
        lease_owner TEXT,
        lease_expires_at REAL,
        crew TEXT,
        backend TEXT,
        route_source TEXT,
        route_reason TEXT,
        route_confidence REAL,
        envelope TEXT,
        actions TEXT,
        external_id TEXT,
        last_error TEXT NOT NULL DEFAULT '',
        outcome TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        finished_at REAL
    )""",
    "CREATE INDEX idx_jobs_ready ON jobs(state, run_at)",
    "CREATE INDEX idx_jobs_conversation ON jobs(account_id, conversation_id, state)",
    "CREATE INDEX idx_jobs_finished ON jobs(finished_at)",
    # One row per action applied in Chatwoot; the row exists before the call so that a
    # crash or a dropped connection can be told apart from "never sent".
    """CREATE TABLE actions_applied (
        job_id INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        kind TEXT NOT NULL,
        account_id INTEGER NOT NULL,
        conversation_id INTEGER NOT NULL,
        content_hash TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL,
        chatwoot_message_id INTEGER,
        detail TEXT NOT NULL DEFAULT '',
        started_at REAL NOT NULL,
        finished_at REAL,
        PRIMARY KEY (job_id, idx)
    )""",
    "CREATE INDEX idx_actions_conversation ON actions_applied(account_id, conversation_id, content_hash)",
    """CREATE TABLE routing_decisions (
        id INTEGER PRIMARY KEY,
        job_id INTEGER,
        account_id INTEGER NOT NULL,
        conversation_id INTEGER NOT NULL,
        crew TEXT NOT NULL,
        source TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        confidence REAL,
        decided_at REAL NOT NULL
    )""",
    "CREATE INDEX idx_decisions_at ON routing_decisions(decided_at)",
    "CREATE INDEX idx_decisions_conversation ON routing_decisions(account_id, conversation_id)",
    """CREATE TABLE crew_attempts (
        id INTEGER PRIMARY KEY,
        job_id INTEGER NOT NULL,
        request_id TEXT NOT NULL,
        crew TEXT NOT NULL,
        backend TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        started_at REAL NOT NULL,
        duration REAL,
        outcome TEXT NOT NULL,
        status_code INTEGER,
        error TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX idx_attempts_job ON crew_attempts(job_id)",
    "CREATE INDEX idx_attempts_started ON crew_attempts(started_at)",
    # Persisted metric values (counters and histograms) so figures survive restarts and
    # the console can read them without the sidecar's HTTP port.
    """CREATE TABLE metrics (
        name TEXT NOT NULL,
        labels TEXT NOT NULL,
        kind TEXT NOT NULL,
        value TEXT NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (name, labels)
    )""",
    # Small documents shared with the console: health snapshot, config status, identity.
    """CREATE TABLE kv (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at REAL NOT NULL
    )""",
    """CREATE TABLE config_audit (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        actor TEXT NOT NULL,
        keys TEXT NOT NULL,
        changes TEXT NOT NULL
    )""",
    """CREATE TABLE operator_actions (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    )""",
]


@MIGRATIONS(name="0001_initial")
def m0001_initial(db: Database) -> None:
    """Creates the initial schema."""
    for statement in _INITIAL_SCHEMA:
        db.execute(statement)


@MIGRATIONS(name="0002_pending_deliveries")
def m0002_pending_deliveries(db: Database) -> None:
    """Deliveries are acknowledged once journaled and applied afterwards, in arrival order;
    this partial index lets the applier find the not-yet-applied ones without a scan (it
    holds only the backlog, so it stays tiny)."""
    db.execute("CREATE INDEX idx_deliveries_pending ON deliveries(id) WHERE outcome = 'pending'")


@MIGRATIONS(name="0003_processes_and_additive_metrics")
def m0003_processes_and_additive_metrics(db: Database) -> None:
    """Several processes (Sanic intake workers, the queue worker's own process) share the state:
    metrics become sums each process adds to (a row per counter, per histogram bucket, sum and
    count), processes announce themselves, once-only work takes a lease, and a worker renews
    all its leases in one statement."""
    db.execute("""CREATE TABLE metric_values (
        name TEXT NOT NULL,
        labels TEXT NOT NULL,
        kind TEXT NOT NULL,
        part TEXT NOT NULL,
        value REAL NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (name, labels, part)
    )""")
    for name, labels, kind, value, updated_at in db.execute(
            "SELECT name, labels, kind, value, updated_at FROM metrics").fetchall():
        for part, number in _metric_parts(kind, value):
            db.execute("INSERT INTO metric_values VALUES (?,?,?,?,?,?)", (name, labels, kind, part, number, updated_at))
    db.execute("DROP TABLE metrics")
    db.execute("""CREATE TABLE processes (
        id TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        version TEXT NOT NULL,
        started_at REAL NOT NULL,
        seen_at REAL NOT NULL,
        info TEXT NOT NULL DEFAULT '{}'
    )""")
    db.execute("""CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        expires_at REAL NOT NULL
    )""")
    db.execute("CREATE INDEX idx_jobs_lease ON jobs(lease_owner) WHERE state = 'in_flight'")


def _metric_parts(kind: str, text: str) -> list[tuple[str, float]]:
    """The old metrics table kept a JSON value per series: a number, or a histogram document."""
    try:
        value = json.loads(text)
    except ValueError:
        return []
    if kind == "histogram" and isinstance(value, dict):
        parts = [(f"b{i}", float(c)) for i, c in enumerate(value.get("counts") or [])]
        return [*parts, ("sum", float(value.get("sum", 0.0))), ("count", float(value.get("count", 0)))]
    if isinstance(value, int | float):
        return [("", float(value))]
    return []


@MIGRATIONS(name="0004_team_features")
def m0004_team_features(db: Database) -> None:
    """What a support team needs beyond answering: a job's mode (auto, draft, shadow) and rule,
    shadow jobs beside the live one, every hand-off with its category (and the reminder
    watchdog's marks), and outcome events for analytics (answered, hand-off, resolved by the
    bot, reopened, CSAT, shadow answers)."""
    for statement in (
        "ALTER TABLE jobs ADD COLUMN mode TEXT NOT NULL DEFAULT 'auto'",
        "ALTER TABLE jobs ADD COLUMN rule TEXT NOT NULL DEFAULT ''",
        # A shadow job runs beside the live job of the same burst (its id); it never blocks the
        # conversation's queue and never writes to Chatwoot.
        "ALTER TABLE jobs ADD COLUMN shadow_of INTEGER",
        "CREATE INDEX idx_jobs_shadow ON jobs(shadow_of) WHERE shadow_of IS NOT NULL",
        "ALTER TABLE routing_decisions ADD COLUMN rule TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE routing_decisions ADD COLUMN mode TEXT NOT NULL DEFAULT 'auto'",
        "ALTER TABLE conversations ADD COLUMN rule TEXT NOT NULL DEFAULT ''",
        # The mode of the bot's latest turn: a draft or shadow conversation keeps getting crew
        # answers after a human took it (they are for the agents, or for nobody).
        "ALTER TABLE conversations ADD COLUMN mode TEXT NOT NULL DEFAULT 'auto'",
        "CREATE INDEX idx_conversations_contact ON conversations(contact_id)",
        # Chatwoot's updated_at of the conversation (every status change moves it): orders two
        # snapshots with the same last activity (a resolve and the reopen right after it).
        "ALTER TABLE conversations ADD COLUMN remote_updated_at REAL",
        """CREATE TABLE handoffs (
            id INTEGER PRIMARY KEY,
            account_id INTEGER NOT NULL,
            conversation_id INTEGER NOT NULL,
            job_id INTEGER,
            category TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            crew TEXT NOT NULL DEFAULT '',
            rule TEXT NOT NULL DEFAULT '',
            team_id INTEGER,
            at REAL NOT NULL,
            waiting_since REAL NOT NULL,
            human_replied_at REAL,
            reminded_at REAL,
            escalated_at REAL
        )""",
        "CREATE INDEX idx_handoffs_conversation ON handoffs(account_id, conversation_id)",
        "CREATE INDEX idx_handoffs_waiting ON handoffs(waiting_since) WHERE human_replied_at IS NULL "
        "AND reminded_at IS NULL",
        """CREATE TABLE outcomes (
            id INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            account_id INTEGER NOT NULL,
            conversation_id INTEGER NOT NULL,
            crew TEXT NOT NULL DEFAULT '',
            rule TEXT NOT NULL DEFAULT '',
            kind TEXT NOT NULL,
            value REAL,
            detail TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX idx_outcomes_at ON outcomes(at)",
        "CREATE INDEX idx_outcomes_conversation ON outcomes(account_id, conversation_id, kind)",
    ):
        db.execute(statement)


SEARCH_DOC = "{t}contact_name || char(10) || {t}inbox_name || char(10) || {t}last_message_preview"
"""What the console's free-text filter searches in a conversation: the three texts an operator sees
in its row, one per line (a filter has no line break, so no match spans two of them)."""


@MIGRATIONS(name="0005_lifecycle")
def m0005_lifecycle(db: Database) -> None:
    """Months in production: indexes that let retention and erasure find rows without a scan, and a
    trigram full-text index of the conversations for the console's filter.

    The index (``conversation_search``, FTS5 over the ``conversation_docs`` view, no copy of the
    text) is kept up to date in the background, not by a trigger: a trigram index updated per
    message would cost every webhook a few hundred microseconds. Instead the triggers below note
    which conversations changed (``search_dirty``, with the text the index holds for them, which
    FTS5 needs to remove it), and ``state.sqlite.search`` indexes them in batches; a filter always
    looks at the noted conversations too, so it is exact while the index catches up. Existing
    conversations start as noted, so an upgraded database is indexed in the background.
    """
    old = SEARCH_DOC.format(t="old.")
    for statement in (
        "CREATE INDEX idx_messages_created ON messages(created_at)",
        "CREATE INDEX idx_handoffs_at ON handoffs(at)",
        # The filter's conversation-number match ("1234") without a scan.
        "CREATE INDEX idx_conversations_number ON conversations(conversation_id)",
        # An erasure finds a conversation's raw deliveries, and a contact's own events (no
        # conversation), without reading every stored webhook.
        "CREATE INDEX idx_deliveries_conversation ON deliveries(conversation_id)",
        f"CREATE VIEW conversation_docs AS SELECT id, {SEARCH_DOC.format(t='')} AS doc FROM conversations",
        "CREATE VIRTUAL TABLE conversation_search USING fts5(doc, content='conversation_docs', content_rowid='id', "
        "tokenize='trigram')",
        # Merging is done in small steps by the background indexer, never inside someone's write.
        "INSERT INTO conversation_search(conversation_search, rank) VALUES ('automerge', 0)",
        # old_doc: the text the index holds for the row (NULL: not indexed); the first change
        # since the last indexing wins, later ones leave it as it is. (ON CONFLICT DO NOTHING, not
        # INSERT OR IGNORE: under the conversations' own upsert, OR IGNORE would still fail.)
        "CREATE TABLE search_dirty (id INTEGER PRIMARY KEY, old_doc TEXT)",
        "CREATE TRIGGER conversations_search_insert AFTER INSERT ON conversations BEGIN "
        "INSERT INTO search_dirty(id, old_doc) VALUES (new.id, NULL) ON CONFLICT(id) DO NOTHING; END",
        "CREATE TRIGGER conversations_search_update AFTER UPDATE OF contact_name, inbox_name, last_message_preview "
        "ON conversations WHEN old.contact_name IS NOT new.contact_name OR old.inbox_name IS NOT new.inbox_name "
        "OR old.last_message_preview IS NOT new.last_message_preview BEGIN "
        f"INSERT INTO search_dirty(id, old_doc) VALUES (old.id, {old}) ON CONFLICT(id) DO NOTHING; END",
        "CREATE TRIGGER conversations_search_delete AFTER DELETE ON conversations BEGIN "
        f"INSERT INTO search_dirty(id, old_doc) VALUES (old.id, {old}) ON CONFLICT(id) DO NOTHING; END",
        "INSERT INTO search_dirty(id, old_doc) SELECT id, NULL FROM conversations",
    ):
        db.execute(statement)


KNOWN_MIGRATIONS = ("0001_initial", "0002_pending_deliveries", "0003_processes_and_additive_metrics",
                    "0004_team_features", "0005_lifecycle")
"""Every migration name this version knows, in order (checked by a test)."""
