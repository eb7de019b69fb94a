"""Provides the schema of how long the state keeps what it no longer needs (``retention:``).

Every ``*_days`` key is a number of days (decimals allowed); ``0`` keeps that kind of row
forever. Dead letters, work not answered yet (open jobs, webhooks not applied yet, hand-offs
still waiting for a human) and the messages those need are never pruned, whatever the values.
"""

from __future__ import annotations

from connector_config.fields import Int, Seconds
from connector_config.records import _Section, section

Days = Seconds()
"""A number of days, integer or decimal, >= 0 (0: keep forever)."""

ANALYTICS_DAYS = 7.0
"""The longest analytics window (``/stats?window=7d``, the console's 7-day view)."""


@section
class RetentionConfig(_Section):
    """How long each kind of row is kept, and how the background pruning paces itself."""

    deliveries_days: Days = 7.0
    """Raw webhook deliveries (their JSON bodies) once applied; unapplied ones are always kept."""
    jobs_days: Days = 30.0
    """Finished crew turns (answered, superseded, cancelled, discarded) with their crew attempts and
    applied actions; dead letters and open work are always kept."""
    decisions_days: Days = 30.0
    """Routing decisions (console view 3)."""
    messages_days: Days = 90.0
    """Conversation history (what crews get as context, the console's timeline); messages of
    conversations with open work or a dead letter are kept."""
    outcomes_days: Days = 30.0
    """Analytics events (answers, hand-offs, CSAT, shadow answers); 7 or more keeps the 7-day
    analytics window whole."""
    handoffs_days: Days = 30.0
    """Hand-offs a human has answered or been reminded of; hand-offs still waiting are kept."""
    audit_days: Days = 365.0
    """Config changes and operator actions (erasures included)."""
    metrics_days: Days = 90.0
    """A metric series (one label set) not incremented for this long is dropped from /metrics."""
    interval_seconds: Seconds(positive=True) = 60.0
    """Pause between pruning passes (each pass also gives freed space back to the disk)."""
    batch_rows: Int(1, 100000) = 500
    """Most rows deleted per transaction; batches are made smaller while one takes over 5 ms, so
    every pause of intake stays short."""

    def days(self, kind: str) -> float:
        """The ``<kind>_days`` value (0: keep forever)."""
        return float(getattr(self, f"{kind}_days"))
