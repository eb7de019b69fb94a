"""Provides business-hours arithmetic: is an inbox open at a moment, and when does it open next.

Pure functions over :class:`BusinessHours` and an epoch time, shared by the sidecar (after-hours
behaviour, the reminder clock) and the console (which inboxes are open now). Everything is
computed in the inbox's own time zone, so a span like ``mon: 08:00-18:00`` means 08:00 on the
wall clocks of that zone, across daylight-saving changes.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from functools import lru_cache

from connector_config.team import DAYS, BusinessHours

_SEARCH_DAYS = 400
"""How far ahead :func:`next_opening` looks (a year of holidays cannot hide every opening)."""


@lru_cache(maxsize=64)
def _zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def local_time(hours: BusinessHours, at: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(at, _zone(hours.timezone))


def is_open(hours: BusinessHours | None, at: float) -> bool:
    """Whether humans are there at epoch ``at`` (no business hours set: always)."""
    if hours is None:
        return True
    local = local_time(hours, at)
    if local.date() in hours.holidays:
        return False
    minute = local.hour * 60 + local.minute
    return any(start <= minute < end for start, end in hours.weekly.get(DAYS[local.weekday()], ()))  # type: ignore[call-overload]


def next_opening(hours: BusinessHours | None, at: float) -> dt.datetime | None:
    """The next moment (in the inbox's zone) the inbox opens after ``at``; ``at`` itself when it is
    open; None when no opening is set at all."""
    if hours is None or is_open(hours, at):
        return local_time(hours, at) if hours is not None else None
    zone = _zone(hours.timezone)
    local = local_time(hours, at)
    for offset in range(_SEARCH_DAYS):
        day = local.date() + dt.timedelta(days=offset)
        if day in hours.holidays:
            continue
        for start, _end in sorted(hours.weekly.get(DAYS[day.weekday()], ())):  # type: ignore[call-overload]
            opening = dt.datetime.combine(day, dt.time(start // 60, start % 60), tzinfo=zone)
            # A wall-clock time skipped by a daylight-saving jump still round-trips to a real instant.
            if opening.timestamp() > at:
                return opening
    return None


def describe_opening(opening: dt.datetime | None, at: float, hours: BusinessHours) -> str:
    """``today at 08:00``, ``tomorrow at 08:00`` or ``on Monday 28 Dec at 08:00`` (the zone's clock)."""
    if opening is None:
        return "soon"
    today = local_time(hours, at).date()
    clock = opening.strftime("%H:%M")
    if opening.date() == today:
        return f"today at {clock}"
    if opening.date() == today + dt.timedelta(days=1):
        return f"tomorrow at {clock}"
    return f"on {opening.strftime('%A')} {opening.day} {opening.strftime('%b')} at {clock}"


def away_message(hours: BusinessHours, at: float) -> str:
    """The inbox's away message with ``{opens_at}`` filled in."""
    opens = describe_opening(next_opening(hours, at), at, hours)
    return hours.away_message.replace("{opens_at}", opens)


__all__ = ["away_message", "describe_opening", "is_open", "local_time", "next_opening"]
