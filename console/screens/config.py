"""Provides ConfigScreen: the effective (masked) config, the last edit's validity, the audit trails."""

from __future__ import annotations

import json
from typing import Any

import yaml
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static, TabbedContent, TabPane

from console.format import block, clean, literal, since, stamp
from console.screens.base import LiveScreen
from console.snapshots import ConfigData
from console.widgets.live_table import LiveTable


def render_effective(effective: dict[str, Any] | None) -> Text:
    """The sidecar's effective config as YAML; secrets arrive already masked (****abcd)."""
    if effective is None:
        return Text("The sidecar has not published its effective config yet.", style="dim")
    dumped = yaml.safe_dump(effective, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return block(dumped, 50_000)


def render_status(data: ConfigData) -> Text:
    status = data.status
    text = Text()
    if status is None:
        text.append("Config status unknown (the sidecar has not reported it yet)", style="bold yellow")
        return text
    if status.get("valid", True):
        text.append("✓ Last edit of config.yaml is valid", style="bold green")
    else:
        text.append("✗ Last edit of config.yaml is INVALID (the sidecar keeps the previous config): ",
                    style="bold red")
        text.append(clean(status.get("error") or "unknown error"), style="red")
    if status.get("path"):
        text.append(f" · {clean(status['path'])}", style="dim")
    loaded = status.get("loaded_at")
    if isinstance(loaded, int | float):
        text.append(f" · loaded {stamp(loaded)}", style="dim")
    return text


class ConfigScreen(LiveScreen):
    """Effective config with secrets masked, validity of the last edit, audit trail."""

    NAV = "config"
    VIEW_TITLE = "Config"
    HELP = ("The configuration the sidecar is running with, as it published it (every secret "
            "masked as **** plus its last 4 characters; the console never reads secrets from "
            "config.yaml). The top line says whether the last edit of config.yaml was valid. "
            "The audit tab lists config changes; the operator tab lists retries, discards "
            "and ownership changes, with who and when.")
    BINDINGS = [
        Binding("e", "tab('effective')", "Effective"),
        Binding("a", "tab('audit')", "Audit"),
        Binding("o", "tab('operator')", "Operator actions"),
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._effective: Any = object()

    def compose_body(self) -> ComposeResult:
        yield Static(id="config-status")
        with TabbedContent(id="config-tabs", initial="effective"):
            with TabPane("Effective config", id="effective"), VerticalScroll(id="effective-scroll"):
                yield Static(id="effective-text")
            with TabPane("Audit trail", id="audit"):
                audit = LiveTable(id="audit-table")
                audit.set_columns(("at", "When"), ("actor", "Who"), ("keys", "Keys"), ("changes", "Changes"))
                yield audit
            with TabPane("Operator actions", id="operator"):
                ops = LiveTable(id="operator-table")
                ops.set_columns(("at", "When"), ("actor", "Who"), ("action", "Action"),
                                ("target", "Target"), ("detail", "Detail"))
                yield ops

    def fetch(self, args: Any) -> ConfigData:
        return self.ctx.reader.config()

    def status_text(self, data: ConfigData) -> str:
        fresh = f"config published {since(data.now - data.effective_age, data.now)} ago" \
            if data.effective_age is not None else "no config published"
        return f"{fresh} · {len(data.audit)} changes · {len(data.operator_actions)} operator actions"

    def show(self, data: ConfigData) -> None:
        self.query_one("#config-status", Static).update(render_status(data))
        if data.effective != self._effective:
            # YAML-dumping and re-wrapping the whole config every second would be waste.
            self._effective = data.effective
            self.query_one("#effective-text", Static).update(render_effective(data.effective))
        self.query_one("#audit-table", LiveTable).sync([(str(a.id), (
            literal(stamp(a.at), 19), literal(a.actor, 24), literal(", ".join(a.keys), 40),
            literal(json.dumps(a.changes, ensure_ascii=False, sort_keys=True), 120),
        )) for a in data.audit])
        self.query_one("#operator-table", LiveTable).sync([(str(o.id), (
            literal(stamp(o.at), 19), literal(o.actor, 24), literal(o.action, 20),
            literal(o.target, 30), literal(o.detail, 60),
        )) for o in data.operator_actions])

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
