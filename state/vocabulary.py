"""Provides the words the sidecar and the console share: owners, job states and modes, documents,
thresholds.

Both apps read the same state, so what a value means is defined once, here, next to the tables
that hold it: the sidecar writes these values and the console shows and filters by them.
"""

from __future__ import annotations

from typing import Final

# -- who answers a conversation ---------------------------------------------------------------
BOT: Final = "bot"
"""The bot answers the customer."""
HUMAN: Final = "human"
"""A human agent took over (assigned, replied, or the bot handed off)."""
PAUSED: Final = "paused"
"""Nobody automatic answers: snoozed, or an operator paused the bot."""
OWNERS: Final = (BOT, HUMAN, PAUSED)

# -- message roles in a conversation's history ------------------------------------------------
CUSTOMER_ROLE: Final = "customer"
BOT_ROLE: Final = "bot"
AGENT_ROLE: Final = "agent"
NOTE_ROLE: Final = "note"
PUBLIC_ROLES: Final = (CUSTOMER_ROLE, BOT_ROLE, AGENT_ROLE)
"""Roles sent to crews as history (private notes and templates are not)."""

# -- the queue ------------------------------------------------------------------------------------
PENDING: Final = "pending"
IN_FLIGHT: Final = "in_flight"
WAITING: Final = "waiting"
"""The crew accepted the request (202) and answers later, by callback or by polling."""
DONE: Final = "done"
DEAD: Final = "dead"
SUPERSEDED: Final = "superseded"
CANCELLED: Final = "cancelled"
DISCARDED: Final = "discarded"
OPEN_STATES: Final = (PENDING, IN_FLIGHT, WAITING)
TERMINAL_STATES: Final = (DONE, DEAD, SUPERSEDED, CANCELLED, DISCARDED)
"""A terminal job never changes again, except a dead letter an operator retries or discards."""

# -- the mode of a turn (a job's ``mode``) --------------------------------------------------------
AUTO: Final = "auto"
"""The bot answers the customer."""
DRAFT: Final = "draft"
"""The answer reaches the agents as a private suggested-reply note, never the customer."""
SHADOW: Final = "shadow"
"""The answer is only recorded (state, /stats, metrics); nothing of it is written to Chatwoot."""
NOTICE: Final = "notice"
"""The sidecar's own message (a hand-off reminder), no crew asked."""
PASSIVE_MODES: Final = frozenset({DRAFT, SHADOW})
"""Modes in which the bot never speaks to the customer, so it keeps working whoever owns the
conversation."""

# -- deliveries (the journal) ------------------------------------------------------------------
UNAPPLIED: Final = "pending"
"""Outcome of a delivery acknowledged to Chatwoot but not applied to conversation state yet."""

# -- documents shared through the kv table -------------------------------------------------------
HEALTH_SNAPSHOT: Final = "health.snapshot"
"""The sidecar's latest /health document, written every probe cycle."""
CONFIG_STATUS: Final = "config.status"
"""Whether the running config is what config.yaml says (and why not)."""
CONFIG_EFFECTIVE: Final = "config.effective"
"""The running config, secrets masked."""
SELF_USER_IDS: Final = "chatwoot.self_user_ids"
"""Chatwoot user ids the sidecar posts as (learned from create answers)."""
CREW_IN_FLIGHT: Final = "crew.in_flight"
"""Crew calls in flight per back-end (the worker's semaphores), for /health and the console."""
RETENTION_STATUS: Final = "retention.status"
"""The latest retention pass: when, how long, rows pruned per kind, pages given back, its error."""
SEARCH_PURGE: Final = "search.purge"
"""Set by an erasure: old copies of the erased text are still in the storage (SQLite: the filter
index's old segments and the WAL; PostgreSQL: dead row versions); the worker process clears them
(SQLite: merges with zeroing, empties the WAL; PostgreSQL: a plain VACUUM) and clears this."""

# -- when the operator should look -------------------------------------------------------------
QUEUE_STALE_SECONDS: Final = 900.0
"""An open job older than this (15 min) means work is stuck: /health is degraded and the console
shows the queue's age in red."""
JOURNAL_STALE_SECONDS: Final = 60.0
"""A delivery acknowledged this long ago and still not applied means the applier is stuck or
badly behind: /health is degraded and the console shows the backlog in red. Applying normally
takes milliseconds; a 10 s burst at full intake speed takes about 30 s to work off."""
