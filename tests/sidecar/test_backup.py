"""Backup, restore and compact as an operator runs them: real ``python -m sidecar`` processes
against a running sidecar that keeps receiving webhooks. They copy and rewrite SQLite's file
(sqlite_only); on a PostgreSQL state each says in one line to use the server's own tools."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from simulators import FakeChatwoot
from tests import backends
from tests.conftest import SidecarFactory
from tests.harness import REPO, SidecarBase
from tests.reliability.helpers import Ledger, fresh_session, post_delivery, signed_delivery
from tests.waiting import wait_until


async def command(proc: SidecarBase, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m sidecar <args> --config <the sidecar's config>`` in a process of its own."""
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "sidecar", *args, "--config", str(proc.config_path)],
        cwd=proc.workdir, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def one_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    out = result.stdout if code == 0 else result.stderr
    assert (result.stderr if code == 0 else result.stdout) == ""
    assert "Traceback" not in out and out.count("\n") == 1, out
    return out.strip()


def delivery_ids(path: Path) -> set[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return {r[0] for r in conn.execute("SELECT delivery_id FROM deliveries WHERE delivery_id IS NOT NULL")}
    finally:
        conn.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.sqlite_only
async def test_backup_while_webhooks_stream_then_restore(sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot,
                                                         tmp_path: Path) -> None:
    """A backup taken during a stream of webhooks holds every delivery acknowledged before it
    started, passes the integrity check, and restores to a state the sidecar serves again."""
    proc = await sidecar_factory()
    ledger = Ledger()
    acknowledged_before: set[str] = set()
    streaming = True

    async def stream() -> None:
        async with fresh_session() as session:
            n = 0
            while streaming or n < 20:
                conv = chatwoot.open_conversation("webwidget")
                delivery, body, headers = signed_delivery(chatwoot, conv, f"mensagem {n}")
                await post_delivery(session, proc.webhook_url, delivery, body, headers, ledger)
                n += 1

    sender = asyncio.create_task(stream())
    await wait_until(lambda: len(ledger.ok()) >= 5, what="webhooks flowing")
    acknowledged_before = set(ledger.ok())
    first = tmp_path / "backups" / "during.db"
    first.parent.mkdir()
    line = one_line(await command(proc, "backup", str(first)), 0)
    assert line.startswith(f"backed up {proc.db_path} to {first}: ") and "schema 0005_lifecycle" in line
    streaming = False
    await sender
    assert not ledger.errors and set(ledger.statuses.values()) == {200}
    assert acknowledged_before <= delivery_ids(first)
    second = tmp_path / "backups" / "after.db"
    one_line(await command(proc, "backup", str(second)), 0)
    assert ledger.ok() <= delivery_ids(second)
    assert not Path(f"{second}-wal").exists()  # one self-contained file

    # Restoring onto the state a sidecar runs on is refused; once it is stopped, it works.
    refused = one_line(await command(proc, "restore", str(second)), 2)
    assert refused.startswith(f"restore: a sidecar is running on {proc.db_path} (pid ")
    assert proc.query(lambda tx: tx.processes.live(0.0))  # nothing was touched
    await proc.stop()
    line = one_line(await command(proc, "restore", str(first)), 0)
    assert line.startswith(f"restored {proc.db_path} from {first}: schema 0005_lifecycle")
    assert "the state it replaced is kept as" in line
    kept = Path(line.rsplit("kept as ", 1)[1])
    assert ledger.ok() <= delivery_ids(kept)  # the replaced state is still at hand
    assert delivery_ids(proc.db_path) == delivery_ids(first)
    await proc.start()
    status, body, _ = await proc.client.get("/health")
    assert status == 200 and body["checks"]["database"]["status"] == "ok"
    conv = chatwoot.open_conversation("whatsapp")
    status, answer = await chatwoot.customer_says(conv, "ainda aí?")
    assert (status, answer["status"]) == (200, "accepted")
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)


@pytest.mark.sqlite_only
async def test_restore_refuses_a_newer_or_foreign_file_and_changes_nothing(
        sidecar_factory: SidecarFactory, tmp_path: Path) -> None:
    proc = await sidecar_factory()
    newer = tmp_path / "newer.db"
    one_line(await command(proc, "backup", str(newer)), 0)
    await proc.stop()
    conn = sqlite3.connect(newer)
    conn.execute("INSERT INTO _sqlite_migrations(migration_set, name, applied_at) "
                 "VALUES ('connector', '0099_from_the_future', '2031-01-01')")
    conn.commit()
    conn.close()
    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE notes(x)")
    conn.commit()
    conn.close()
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 100, encoding="utf-8")
    before = digest(proc.db_path)
    for path, reason in ((newer, "was written by a newer connector (schema 0099_from_the_future"),
                         (foreign, "is not a connector state"), (text, "is not a SQLite database"),
                         (tmp_path / "missing.db", "no such file")):
        line = one_line(await command(proc, "restore", str(path)), 2)
        assert line.startswith("restore: FILE: ") and reason in line, line
    assert digest(proc.db_path) == before
    assert not list(proc.db_path.parent.glob("*.before-restore-*"))


@pytest.mark.sqlite_only
async def test_backup_refuses_a_file_that_exists_or_a_missing_folder(sidecar_factory: SidecarFactory,
                                                                      tmp_path: Path) -> None:
    proc = await sidecar_factory()
    taken = tmp_path / "taken.db"
    taken.write_bytes(b"keep me")
    line = one_line(await command(proc, "backup", str(taken)), 2)
    assert line == f"backup: FILE: {taken} already exists (choose another name, or --force)"
    assert taken.read_bytes() == b"keep me"
    line = one_line(await command(proc, "backup", str(tmp_path / "nowhere" / "x.db")), 2)
    assert line == f"backup: FILE: {tmp_path / 'nowhere'} is not a folder"
    one_line(await command(proc, "backup", str(taken), "--force"), 0)
    assert delivery_ids(taken) == set()
    line = one_line(await command(proc, "backup", "--bogus"), 2)
    assert line.startswith("backup: ")


@pytest.mark.sqlite_only
async def test_compact_refuses_while_running_then_converts_an_old_file(sidecar_factory: SidecarFactory) -> None:
    proc = await sidecar_factory()
    line = one_line(await command(proc, "compact"), 2)
    assert line.startswith(f"compact: a sidecar is running on {proc.db_path}")
    await proc.stop()
    conn = sqlite3.connect(proc.db_path)  # as if made before auto-vacuum existed
    conn.execute("PRAGMA auto_vacuum=NONE")
    conn.execute("VACUUM")
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    conn.close()
    line = one_line(await command(proc, "compact"), 0)
    assert line.startswith(f"compacted {proc.db_path}: ")
    conn = sqlite3.connect(proc.db_path)
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    conn.close()


async def test_on_postgres_backup_restore_and_compact_name_the_servers_tools(
        sidecar_factory: SidecarFactory, tmp_path: Path) -> None:
    """A PostgreSQL state: exit 2 and one line each, nothing written, never the password."""
    if backends.BACKEND != backends.POSTGRES:
        pytest.skip("the suite runs on SQLite (make test-postgres runs this)")
    proc = await sidecar_factory()
    where = proc.location.split("@", 1)[1]  # host:port/database, as the line shows it
    target = tmp_path / "copy.dump"
    for args, tool in ((("backup", str(target)), "pg_dump -Fc"), (("restore", str(target)), "pg_restore")):
        line = one_line(await command(proc, *args), 2)
        assert line.startswith(f"{args[0]}: the state is in PostgreSQL ({where}): ") and tool in line, line
        assert "copies a SQLite state file only" in line
    line = one_line(await command(proc, "compact"), 2)
    assert line.startswith(f"compact: the state is in PostgreSQL ({where}): autovacuum") and "VACUUM FULL" in line
    assert not target.exists()
    status, body, _ = await proc.client.get("/health")
    assert status == 200 and body["checks"]["storage"]["auto_vacuum"] == "autovacuum"
