"""Provides inbox_hours and modes_of: what the console says about business hours and modes.

Both read the effective config the sidecar published (so the console shows what the sidecar
runs, not what a file on this machine says) through the shared schema in ``connector_config``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from connector_config import ConfigError, section_from_mapping
from connector_config.hours import describe_opening, is_open, local_time, next_opening
from console.snapshots import InboxHours


def inbox_hours(config: Mapping[str, Any], names: Callable[[list[int]], dict[int, str]],
                now: float) -> tuple[InboxHours, ...]:
    """Every configured inbox with business hours: open now, or when it opens next."""
    try:
        inboxes = section_from_mapping(config, "inboxes")
    except ConfigError:
        return ()
    with_hours = {inbox_id: inbox for inbox_id, inbox in inboxes.items() if inbox.business_hours is not None}
    known = names(sorted(with_hours)) if with_hours else {}
    rows = []
    for inbox_id, inbox in sorted(with_hours.items()):
        hours = inbox.business_hours
        zone = hours.timezone
        if is_open(hours, now):
            detail = f"open · {local_time(hours, now).strftime('%a %H:%M')} {zone}"
        else:
            detail = (f"closed · opens {describe_opening(next_opening(hours, now), now, hours)} {zone}"
                      f" · after hours: {hours.after_hours}")
        rows.append(InboxHours(inbox_id=inbox_id, name=known.get(inbox_id, ""), mode=inbox.mode or "",
                               open_now=is_open(hours, now), detail=detail))
    return tuple(rows)


def modes_of(config: Mapping[str, Any]) -> dict[str, str]:
    """Where conversations are not answered in ``auto`` mode, and which rules run a shadow crew."""
    modes: dict[str, str] = {}
    routing = config.get("routing") if isinstance(config.get("routing"), Mapping) else {}
    if routing.get("mode") not in (None, "", "auto"):
        modes["routing"] = str(routing["mode"])
    for index, rule in enumerate(routing.get("rules") or [], start=1):
        if not isinstance(rule, Mapping):
            continue
        name = str(rule.get("name") or f"rule {index}")
        if rule.get("mode") not in (None, "", "auto"):
            modes[name] = str(rule["mode"])
        if rule.get("shadow_crew"):
            modes[f"{name} shadow"] = str(rule["shadow_crew"])
    inboxes = config.get("inboxes") if isinstance(config.get("inboxes"), Mapping) else {}
    for inbox_id, inbox in inboxes.items():
        if isinstance(inbox, Mapping) and inbox.get("mode") not in (None, "", "auto"):
            modes[f"inbox {inbox_id}"] = str(inbox["mode"])
    return modes
