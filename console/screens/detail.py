"""Provides ConversationDetailScreen: one conversation's thread and the sidecar's work on it."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from console.format import clean, since
from console.screens.base import LiveScreen
from console.screens.ownership import ask_toggle_owner
from console.snapshots import ConversationDetail
from console.timeline import build_timeline

OWNER_STYLE = {"bot": "bold green", "human": "bold yellow", "paused": "bold magenta"}


class ConversationDetailScreen(LiveScreen):
    """The thread interleaved with routing decisions, crew attempts and Chatwoot actions."""

    NAV = "conversations"
    VIEW_TITLE = "Conversation"
    HELP = ("One conversation: customer, bot, agent and private-note messages interleaved by "
            "time with each routing decision (crew, source, reason, confidence), each crew "
            "attempt (latency, outcome) and each action applied in Chatwoot. b pauses the bot "
            "or gives the conversation back.")
    BINDINGS = [
        Binding("escape,backspace", "back", "Back"),
        Binding("b", "toggle_owner", "Pause/give back"),
        Binding("end,G", "bottom", "Newest", show=False),
        Binding("home,g", "top", "Oldest", show=False),
    ]

    def __init__(self, ctx: Any, account_id: int, conversation_id: int) -> None:
        super().__init__(ctx)
        self.account_id = account_id
        self.conversation_id = conversation_id
        self._rendered: str | None = None

    def compose_body(self) -> ComposeResult:
        yield Static(id="detail-header")
        with VerticalScroll(id="thread"):
            yield Static(id="thread-text")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#thread", VerticalScroll).focus()

    def fetch(self, args: Any) -> ConversationDetail:
        return self.ctx.reader.conversation(self.account_id, self.conversation_id)

    def status_text(self, data: ConversationDetail) -> str:
        return (f"conversation {data.account_id}/{data.conversation_id} · {len(data.messages)} messages · "
                f"{len(data.decisions)} decisions · {len(data.attempts)} crew attempts")

    def show(self, data: ConversationDetail) -> None:
        self.query_one("#detail-header", Static).update(self._header(data))
        timeline = build_timeline(data)
        # Re-render only when the thread changed, and keep following the newest entry if the
        # operator was already at the bottom (like a chat window).
        if timeline.plain == self._rendered:
            return
        scroller = self.query_one("#thread", VerticalScroll)
        follow = self._rendered is None or scroller.scroll_y >= scroller.max_scroll_y - 1
        self._rendered = timeline.plain
        self.query_one("#thread-text", Static).update(timeline)
        if follow:
            self.call_after_refresh(scroller.scroll_end, animate=False)

    def _header(self, data: ConversationDetail) -> Text:
        conv = data.conversation
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"#{data.conversation_id} ", style="bold")
        if conv is None:
            text.append("(not stored)", style="dim")
            return text
        text.append(clean(conv.contact_name) or "unknown contact", style="bold cyan")
        text.append(f" · {clean(conv.channel or conv.channel_type)} · {clean(conv.inbox_name)}")
        text.append(" · owner ")
        text.append(conv.owner, style=OWNER_STYLE.get(conv.owner, "bold"))
        text.append(f" · {clean(conv.status)} · crew {clean(conv.crew) or '-'}")
        text.append(f" · last message {since(conv.last_message_at, data.now)} ago", style="dim")
        if conv.labels:
            text.append(" · labels " + ", ".join(clean(label) for label in conv.labels), style="dim")
        return text

    def action_back(self) -> None:
        self.dismiss()

    def action_bottom(self) -> None:
        self.query_one("#thread", VerticalScroll).scroll_end(animate=False)

    def action_top(self) -> None:
        self.query_one("#thread", VerticalScroll).scroll_home(animate=False)

    def action_toggle_owner(self) -> None:
        conv = self.data.conversation if self.data is not None else None
        if conv is None:
            self.notify("This conversation is not stored yet", severity="warning", timeout=2)
            return
        ask_toggle_owner(self, self.ctx, conv)
