"""Erasure against a running sidecar: POST /admin/forget and ``python -m sidecar forget`` remove a
person's text from every table (and the file), keep the counts, record the audit without the
content, refuse bad input changing nothing, and the person can write again afterwards."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

from simulators import FakeChatwoot
from state import Tx
from state.vocabulary import SEARCH_PURGE
from tests import backends
from tests.conftest import SidecarFactory
from tests.harness import ADMIN_TOKEN, REPO, SidecarBase
from tests.seeding import every_text as _every_text
from tests.waiting import wait_until

NAME = "Zenóbia Quaresma"
SECRET = "o código do meu cofre é Xylofone-8841"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
FAST_RETENTION = {"retention": {"interval_seconds": 0.2}}


def every_text(proc: SidecarBase) -> str:
    """Every value of every row of every table (blobs decoded), as one text."""
    return proc.query(_every_text)


def traces(text: str, conv: Any) -> list[str]:
    found = [t for t in (NAME, "Zenóbia", "Xylofone-8841") if t in text]
    if conv.contact.phone_number and conv.contact.phone_number in text:
        found.append("phone")
    return found


async def _answered_conversation(chatwoot: FakeChatwoot, name: str = NAME, text: str = SECRET) -> Any:
    conv = chatwoot.open_conversation("whatsapp", contact_name=name)
    status, body = await chatwoot.customer_says(conv, text)
    assert (status, body["status"]) == (200, "accepted")
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)
    return conv


async def _settled(proc: SidecarBase) -> None:
    """Nothing left to apply, answer or index (so the rows a test counts are all there)."""
    def busy(tx: Tx) -> int:
        # In the order work flows (journal, jobs, index): each statement sees the latest commits,
        # so work moving on between two reads is counted at its next stage, never missed.
        unapplied = tx.journal.backlog().unapplied
        open_jobs = tx.jobs.stats().depth
        indexing = tx.search.pending() if tx.search is not None else 0
        return unapplied + open_jobs + indexing
    await wait_until(lambda: proc.query(busy), until=lambda n: n == 0, what="sidecar settled")


def _log_text(proc: SidecarBase) -> str:
    return "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in sorted(proc.log_dir.glob("*.log*")))


async def test_forget_endpoint_erases_the_contact_and_keeps_the_counts(
        sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, tmp_path: Path) -> None:
    proc = await sidecar_factory(FAST_RETENTION)
    conv = await _answered_conversation(chatwoot)
    other = await _answered_conversation(chatwoot, "Outra Pessoa", "quero saber o horário")
    await _settled(proc)
    assert traces(every_text(proc), conv)
    log_before = len(_log_text(proc))
    http = proc.client
    _, stats_before, _ = await http.get("/stats", headers=AUTH)
    status, body, _ = await http.post("/admin/forget", json={"contact_id": conv.contact.id}, headers=AUTH)
    assert status == 200, body
    assert body["status"] == "forgotten" and body["target"] == f"contact {conv.contact.id}"
    assert body["counts"]["conversations"] == 1 and body["counts"]["messages"] >= 2
    assert body["counts"]["deliveries"] >= 2
    _, stats_after, _ = await http.get("/stats", headers=AUTH)
    assert stats_after["totals"]["answered"] == stats_before["totals"]["answered"] == 2
    assert traces(every_text(proc), conv) == []
    assert "quero saber o horário" in every_text(proc)  # the other customer's history stays
    [audit] = proc.query(lambda tx: tx.audit.operator_actions())
    assert (audit.action, audit.target) == ("forget", f"contact {conv.contact.id}")
    assert audit.actor.startswith("api:") and NAME not in audit.detail and "Xylofone" not in audit.detail
    assert proc.query(lambda tx: [c.conversation_id for c in tx.conversations.page(text="Zenóbia")]) == []
    assert proc.query(lambda tx: [c.conversation_id for c in tx.conversations.page(text="Outra")]) == [
        other.display_id]
    # The worker clears the old copies: on SQLite it merges the filter's index with zeroing and
    # gives the freed pages back (then the erased text is nowhere in the file's bytes either); on
    # PostgreSQL it vacuums the old row versions away.
    await wait_until(lambda: proc.query(lambda tx: tx.documents.get(SEARCH_PURGE)), until=lambda v: v is None,
                     what="the old copies purged")
    if backends.BACKEND == backends.SQLITE:
        await wait_until(lambda: proc.query(lambda tx: tx.sql.scalar("PRAGMA freelist_count")),
                         until=lambda n: n == 0, what="free pages given back")
        raw = proc.db_path.read_bytes()
        assert b"Xylofone-8841" not in raw and NAME.encode() not in raw
    written_after = _log_text(proc)[log_before:]
    assert "state.forgotten" in written_after
    assert traces(written_after, conv) == []


async def test_bad_requests_are_refused_and_change_nothing(sidecar_factory: SidecarFactory,
                                                           chatwoot: FakeChatwoot) -> None:
    proc = await sidecar_factory()
    conv = await _answered_conversation(chatwoot)
    await _settled(proc)
    before = every_text(proc)
    http, url = proc.client, "/admin/forget"
    status, body, _ = await http.post(url, json={"contact_id": conv.contact.id})
    assert status == 401
    status, body, _ = await http.post(url, json={"contact_id": conv.contact.id},
                                      headers={"Authorization": "Bearer wrong"})
    assert status == 401
    for document, key in (([1], "body"), ({}, "contact_id"), ({"contact_id": "7"}, "contact_id"),
                          ({"contact_id": 1.5}, "contact_id"), ({"contact_id": 0}, "contact_id"),
                          ({"contact_id": 1, "conversation_id": 2}, "contact_id"),
                          ({"conversation_id": 2, "account_id": True}, "account_id"),
                          ({"contact": 1}, "contact")):
        status, body, _ = await http.post(url, json=document, headers=AUTH)
        assert status == 400 and body["key"] == key, (document, body)
        assert body["error"].startswith(f"{key}:"), body
    status, body, _ = await http.post(url, data=b"{not json", headers={**AUTH, "Content-Type": "application/json"})
    assert status == 400 and body["key"] == "body"
    assert every_text(proc) == before  # not even an audit row


async def test_forget_from_the_command_line_while_the_sidecar_runs(
        sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot) -> None:
    proc = await sidecar_factory()
    conv = await _answered_conversation(chatwoot)
    await _settled(proc)

    async def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "sidecar", "forget", "--config", str(proc.config_path), *args],
            cwd=proc.workdir, capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(REPO),
                                                                                "PATH": "/usr/bin:/bin"})

    for args, message in ((("--contact-id", "abc"), "forget: argument --contact-id: invalid int value: 'abc'"),
                          ((), "forget: --contact-id: give either a contact id or a conversation id"),
                          (("--conversation-id", "-3"), "forget: --conversation-id: must be a whole number >= 1")):
        result = await cli(*args)
        assert result.returncode == 2 and result.stdout == "" and result.stderr.strip() == message, result
    assert proc.query(lambda tx: tx.audit.operator_actions()) == []
    result = await cli("--conversation-id", str(conv.display_id), "--account-id", str(conv.account.id))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(f"forgot conversation {conv.account.id}/{conv.display_id}: 1 conversation")
    assert result.stdout.count("\n") == 1 and result.stderr == ""
    assert traces(every_text(proc), conv) == []
    [audit] = proc.query(lambda tx: tx.audit.operator_actions())
    assert audit.action == "forget" and audit.actor.startswith("cli:")
    # The customer writes again: served as usual, with a fresh history.
    status, body = await chatwoot.customer_says(conv, "voltei, tudo certo?")
    assert status == 200 and (body or {}).get("status") == "accepted", (status, body)
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 2)
