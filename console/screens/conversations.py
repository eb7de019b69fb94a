"""Provides ConversationsScreen: the live, filterable, paged list of conversations."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.timer import Timer
from textual.widgets import DataTable, Input, Select

from console.format import literal, since
from console.screens.base import LiveScreen
from console.screens.detail import ConversationDetailScreen
from console.screens.ownership import ask_toggle_owner
from console.snapshots import ConversationQuery, ConversationsPage
from console.widgets.live_table import LiveTable
from state.vocabulary import OWNERS

OWNER_STYLE = {"bot": "green", "human": "yellow", "paused": "bold magenta"}
_TEXT_DEBOUNCE = 0.3


def conversation_key(account_id: int, conversation_id: int) -> str:
    return f"{account_id}/{conversation_id}"


class ConversationsScreen(LiveScreen):
    """Conversations, most recently active first, with channel/crew/owner/text filters."""

    NAV = "conversations"
    VIEW_TITLE = "Conversations"
    HELP = ("Every conversation the sidecar knows, most recently active first, 50 per page. "
            "Filter by channel, crew, owner (bot, human, paused) and free text (contact, inbox, "
            "last message, or a conversation number). Enter opens the thread; b pauses the bot "
            "or gives the conversation back to it.")
    BINDINGS = [
        Binding("enter", "open", "Open", show=False),
        Binding("b", "toggle_owner", "Pause/give back"),
        Binding("slash", "focus_filter", "Filter"),
        Binding("escape", "clear_filters", "Clear", show=False),
        Binding("right_square_bracket", "page(1)", "Next page"),
        Binding("left_square_bracket", "page(-1)", "Prev page"),
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.filters = ConversationQuery()
        self._debounce: Timer | None = None
        self._facets: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="filters"):
            yield Input(placeholder="/ filter: contact, inbox, text, #id", id="filter-text")
            yield Select[str]([], prompt="channel", id="filter-channel", compact=True)
            yield Select[str]([], prompt="crew", id="filter-crew", compact=True)
            yield Select[str]([(o, o) for o in OWNERS], prompt="owner", id="filter-owner", compact=True)
        table = LiveTable(id="conversations")
        table.set_columns(("channel", "Channel"), ("contact", "Contact"), ("inbox", "Inbox"),
                          ("crew", "Crew"), ("owner", "Owner"), ("status", "Status"),
                          ("age", "Age"), ("last", "Last message"))
        yield table

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(LiveTable).focus()

    # -- data ---------------------------------------------------------------------------------
    def query_args(self) -> ConversationQuery:
        return self.filters

    def fetch(self, args: ConversationQuery) -> ConversationsPage:
        return self.ctx.reader.conversations(args)

    def status_text(self, data: ConversationsPage) -> str:
        q = data.query
        first = q.page * q.page_size + 1 if data.rows else 0
        shown = f"rows {first:,}–{first + len(data.rows) - 1:,}" if data.rows else "no conversations"
        total = f" of {data.total:,}" if data.total is not None else " (filtered)"
        more = " · ] next page" if data.has_next else ""
        return f"{shown}{total} · page {q.page + 1}{more}"

    def show(self, data: ConversationsPage) -> None:
        self._update_facets(data)
        rows = []
        for c in data.rows:
            preview = Text(no_wrap=True, overflow="ellipsis")
            if c.last_message_role:
                preview.append(f"{c.last_message_role}: ", style="dim")
            preview.append_text(literal(c.last_message_preview, 60))
            rows.append((conversation_key(c.account_id, c.conversation_id), (
                literal(c.channel or c.channel_type, 12),
                literal(c.contact_name or f"#{c.contact_id or '?'}", 22),
                literal(c.inbox_name, 16),
                literal(c.crew or "-", 12),
                literal(c.owner, 7, OWNER_STYLE.get(c.owner, "")),
                literal(c.status, 9),
                literal(since(c.last_message_at, data.now), 4),
                preview,
            )))
        self.query_one(LiveTable).sync(rows)

    def _update_facets(self, data: ConversationsPage) -> None:
        # set_options resets a Select, so only touch them when the choices really changed.
        if (data.channels, data.crews) == self._facets:
            return
        self._facets = (data.channels, data.crews)
        for widget_id, values, current in (("#filter-channel", data.channels, self.filters.channel),
                                           ("#filter-crew", data.crews, self.filters.crew)):
            select = self.query_one(widget_id, Select)
            with select.prevent(Select.Changed):
                select.set_options([(Text(v), v) for v in values])
                if current in values:
                    select.value = current

    def selected(self) -> Any:
        key = self.query_one(LiveTable).current_key
        if key is None or self.data is None:
            return None
        for conv in self.data.rows:
            if conversation_key(conv.account_id, conv.conversation_id) == key:
                return conv
        return None

    # -- filters ------------------------------------------------------------------------------
    def _apply(self, **changes: Any) -> None:
        self.filters = replace(self.filters, page=0, **changes)
        self.reload()

    @on(Input.Changed, "#filter-text")
    def _text_changed(self, event: Input.Changed) -> None:
        # Debounced: a LIKE over 100,000 rows per keystroke would be wasted work.
        if self._debounce is not None:
            self._debounce.stop()
        value = event.value
        self._debounce = self.set_timer(_TEXT_DEBOUNCE, lambda: self._apply(text=value))

    @on(Input.Submitted, "#filter-text")
    def _text_submitted(self, event: Input.Submitted) -> None:
        if self._debounce is not None:
            self._debounce.stop()
        self._apply(text=event.value)
        self.query_one(LiveTable).focus()

    @on(Select.Changed)
    def _select_changed(self, event: Select.Changed) -> None:
        value = "" if event.value is Select.NULL else str(event.value)
        field = {"filter-channel": "channel", "filter-crew": "crew", "filter-owner": "owner"}.get(
            event.select.id or "")
        if field and getattr(self.filters, field) != value:
            self._apply(**{field: value})

    def action_focus_filter(self) -> None:
        self.query_one("#filter-text", Input).focus()

    def action_clear_filters(self) -> None:
        self.query_one("#filter-text", Input).value = ""
        for select in self.query(Select):
            with select.prevent(Select.Changed):
                select.clear()
        self._apply(channel="", crew="", owner="", text="")
        self.query_one(LiveTable).focus()

    def action_page(self, delta: int) -> None:
        page = self.filters.page + delta
        if page < 0 or (delta > 0 and self.data is not None and not self.data.has_next):
            self.notify("No more pages" if delta > 0 else "Already on the first page", timeout=2)
            return
        self.filters = replace(self.filters, page=page)
        self.reload()

    # -- actions ------------------------------------------------------------------------------
    @on(DataTable.RowSelected, "#conversations")
    def _row_selected(self) -> None:
        self.action_open()

    def action_open(self) -> None:
        conv = self.selected()
        if conv is not None:
            self.app.push_screen(ConversationDetailScreen(self.ctx, conv.account_id, conv.conversation_id))

    def action_toggle_owner(self) -> None:
        conv = self.selected()
        if conv is None:
            self.notify("Select a conversation first", severity="warning", timeout=2)
            return
        ask_toggle_owner(self, self.ctx, conv)
