"""Provides build_timeline: one conversation's thread interleaved with what the sidecar did.

Messages (customer, bot, agent, notes), routing decisions, crew attempts, actions applied in
Chatwoot and jobs that gave up are merged by time into one Text. Customer text goes in
through :func:`console.format.block`, so it is shown literally and bounded in size.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text

from console.format import block, clean, clock_time, seconds
from console.snapshots import ConversationDetail

ROLE_STYLE = {"customer": "bold cyan", "bot": "bold green", "agent": "bold yellow",
              "note": "bold magenta", "template": "bold blue"}
_FAILED = ("failed", "retry", "error", "timeout")
MESSAGE_CHARS = 4000
"""Longest part of one message shown in the thread (a note says how much more there is)."""

Entry = tuple[float, int, Callable[[Text], None]]


def _line(out: Text, at: float, symbol: str, style: str) -> None:
    out.append(f"{clock_time(at)} ", style="dim")
    out.append(f"{symbol} ", style=style)


def build_timeline(detail: ConversationDetail) -> Text:
    """Renders the merged thread, oldest first."""
    entries: list[Entry] = []
    for m in detail.messages:
        def message(out: Text, m=m) -> None:  # noqa: ANN001 - bound loop variable
            style = ROLE_STYLE.get(m.role, "bold")
            _line(out, m.created_at, "●", style)
            out.append(m.role + (" (private)" if m.private and m.role != "note" else ""), style=style)
            if m.attachments:
                out.append(f"  [{len(m.attachments)} attachment(s)]", style="dim")
            out.append("\n")
            body = block(m.content, MESSAGE_CHARS)
            body.pad_left(2)
            out.append_text(body)
            out.append("\n")
        entries.append((m.created_at, 0, message))
    for d in detail.decisions:
        def decision(out: Text, d=d) -> None:  # noqa: ANN001
            _line(out, d.decided_at, "⇢", "bold blue")
            out.append(f"routed to {clean(d.crew)}", style="blue")
            out.append(f" · {clean(d.source)}")
            if d.confidence is not None:
                out.append(f" · confidence {d.confidence:.2f}")
            if d.reason:
                out.append(" · ")
                out.append(clean(d.reason)[:300], style="dim")
            out.append("\n")
        entries.append((d.decided_at, 1, decision))
    for a in detail.attempts:
        def attempt(out: Text, a=a) -> None:  # noqa: ANN001
            bad = a.outcome in _FAILED
            _line(out, a.started_at, "↻", "bold red" if bad else "bold")
            out.append(f"crew {clean(a.crew)} attempt {a.attempt} via {clean(a.backend)}: ")
            out.append(clean(a.outcome), style="bold red" if bad else "green")
            out.append(f" in {seconds(a.duration)}")
            if a.status_code is not None:
                out.append(f" (HTTP {a.status_code})", style="dim")
            if a.error:
                out.append(" · ")
                out.append(clean(a.error)[:300], style="red")
            out.append("\n")
        entries.append((a.started_at, 2, attempt))
    for act in detail.actions:
        def action(out: Text, act=act) -> None:  # noqa: ANN001
            done = act.get("state") == "done"
            _line(out, float(act.get("started_at") or 0), "✓" if done else "…",
                  "bold green" if done else "bold yellow")
            out.append(f"{clean(act.get('kind', 'action'))} in Chatwoot: ")
            out.append("done" if done else "started, outcome unknown", style="green" if done else "yellow")
            if act.get("chatwoot_message_id"):
                out.append(f" (message #{act['chatwoot_message_id']})", style="dim")
            if act.get("detail"):
                out.append(" · ")
                out.append(clean(act["detail"])[:200], style="dim")
            out.append("\n")
        entries.append((float(act.get("started_at") or 0), 3, action))
    for j in detail.jobs:
        if j.state not in ("dead", "discarded", "cancelled") or j.finished_at is None:
            continue

        def job(out: Text, j=j) -> None:  # noqa: ANN001
            _line(out, j.finished_at or 0, "✗", "bold red")
            out.append(f"job {j.id} {j.state}", style="bold red" if j.state == "dead" else "yellow")
            if j.last_error:
                out.append(": ")
                out.append(clean(j.last_error)[:300])
            out.append("\n")
        entries.append((j.finished_at, 4, job))
    out = Text()
    for _at, _order, render in sorted(entries, key=lambda e: (e[0], e[1])):
        render(out)
    if not entries:
        out.append("No messages stored for this conversation yet.", style="dim")
    return out
