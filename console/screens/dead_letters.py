"""Provides DeadLettersScreen: jobs that gave up, what they carried and why; retry or discard."""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from console.actions import OperatorError
from console.format import block, clean, clock_time, literal, since, stamp
from console.messages import OperatorDone
from console.reader import ReadError
from console.screens.base import LiveScreen
from console.screens.confirm_modal import ConfirmModal
from console.snapshots import DeadLettersData
from console.timeline import ROLE_STYLE
from console.widgets.live_table import LiveTable
from state import DeadLetter


def render_dead_letter(letter: DeadLetter) -> Text:
    """The reason first, then the customer messages the job carried, then its envelope."""
    job = letter.job
    out = Text()
    out.append(f"Job {job.id}", style="bold")
    out.append(f" · conversation {job.account_id}/{job.conversation_id} · crew {clean(job.crew) or '-'}"
               f" · {job.attempts} attempt(s) · failed {stamp(job.finished_at)}\n", style="dim")
    out.append("Reason: ", style="bold red")
    out.append_text(block(letter.reason or "(none recorded)", 2000))
    out.append("\n")
    out.append(f"Messages ({len(letter.messages)}):\n", style="bold")
    for m in letter.messages:
        out.append(f"{clock_time(m.created_at)} ", style="dim")
        out.append(m.role, style=ROLE_STYLE.get(m.role, "bold"))
        out.append(": ")
        out.append_text(block(m.content, 4000))
        out.append("\n")
    if job.envelope:
        out.append("Envelope sent to the crew:\n", style="bold")
        out.append_text(block(json.dumps(job.envelope, ensure_ascii=False, indent=2), 8000, style="dim"))
    return out


class DeadLettersScreen(LiveScreen):
    """Dead letters, newest first, with the selected one's payload and reason below."""

    NAV = "dead"
    VIEW_TITLE = "Dead letters"
    HELP = ("Jobs that gave up after their last attempt, newest first. The pane below shows "
            "the reason and what the job carried (the customer messages and the envelope sent "
            "to the crew). r puts the job back in the queue with fresh attempts; x discards "
            "it. Both ask first and are recorded with your login and the time.")
    BINDINGS = [
        Binding("r", "retry", "Retry"),
        Binding("x,delete", "discard", "Discard"),
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._shown_job: tuple[int, float] | None = None

    def compose_body(self) -> ComposeResult:
        table = LiveTable(id="dead")
        table.set_columns(("job", "Job"), ("failed", "Failed"), ("conversation", "Conversation"),
                          ("crew", "Crew"), ("attempts", "Tries"), ("reason", "Reason"))
        yield table
        with VerticalScroll(id="dead-detail"):
            yield Static(Text("Select a dead letter to see its payload.", style="dim"), id="dead-payload")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(LiveTable).focus()

    def fetch(self, args: Any) -> DeadLettersData:
        return self.ctx.reader.dead_letters()

    def status_text(self, data: DeadLettersData) -> str:
        return f"{data.total:,} dead letters" + (f" (newest {len(data.rows)} shown)"
                                                  if data.total > len(data.rows) else "")

    def show(self, data: DeadLettersData) -> None:
        rows = [(str(d.job.id), (
            literal(d.job.id, 8),
            literal(f"{since(d.job.finished_at, data.now)} ago", 8),
            literal(f"{d.job.account_id}/{d.job.conversation_id}", 14),
            literal(d.job.crew or "-", 12),
            literal(d.job.attempts, 5),
            literal(d.reason, 70, "red"),
        )) for d in data.rows]
        self.query_one(LiveTable).sync(rows)
        if not rows:
            self._shown_job = None
            self.query_one("#dead-payload", Static).update(Text("No dead letters. 🎉", style="green"))
        else:
            self._load_payload()

    def selected_job(self) -> int | None:
        key = self.query_one(LiveTable).current_key
        return int(key) if key is not None else None

    @on(DataTable.RowHighlighted, "#dead")
    def _highlighted(self) -> None:
        self._load_payload()

    def _load_payload(self) -> None:
        job_id = self.selected_job()
        if job_id is None or self.data is None:
            return
        finished = next((d.job.updated_at for d in self.data.rows if d.job.id == job_id), 0.0)
        if self._shown_job == (job_id, finished):
            return
        self._shown_job = (job_id, finished)
        self._fetch_payload(job_id)

    @work(thread=True, exclusive=True, group="payload", exit_on_error=False)
    def _fetch_payload(self, job_id: int) -> None:
        try:
            letter = self.ctx.reader.dead_letter(job_id)
        except ReadError as exc:
            self.app.call_from_thread(self._show_payload, Text(str(exc), style="red"))
            return
        text = render_dead_letter(letter) if letter else Text(f"Job {job_id} is gone.", style="dim")
        self.app.call_from_thread(self._show_payload, text)

    def _show_payload(self, text: Text) -> None:
        self.query_one("#dead-payload", Static).update(text)

    # -- operator actions ---------------------------------------------------------------------
    def action_retry(self) -> None:
        self._confirm("retry")

    def action_discard(self) -> None:
        self._confirm("discard")

    def _confirm(self, what: str) -> None:
        job_id = self.selected_job()
        if job_id is None:
            self.notify("No dead letter selected", severity="warning", timeout=2)
            return
        question = Text(f"{what.capitalize()} dead letter job {job_id}?\n")
        question.append("It goes back to the queue with fresh attempts." if what == "retry"
                        else "It will never be sent; the customer gets no bot answer for it.",
                        style="dim")

        def done(yes: bool | None) -> None:
            if yes:
                self._write(what, job_id)

        self.app.push_screen(ConfirmModal(f"{what.capitalize()} dead letter", question), done)

    @work(thread=True, group="operator", exit_on_error=False)
    def _write(self, what: str, job_id: int) -> None:
        try:
            ok = (self.ctx.operator.retry if what == "retry" else self.ctx.operator.discard)(job_id)
        except OperatorError as exc:
            self.post_message(OperatorDone(False, str(exc)))
            return
        past = "put back in the queue" if what == "retry" else "discarded"
        self.post_message(OperatorDone(ok, f"Job {job_id} {past}" if ok
                                       else f"Job {job_id} is no longer a dead letter"))
