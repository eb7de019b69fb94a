"""The config manager on its own: POST merges, validates, applies and writes back (comments kept);
a hand edit is applied from the file; a refused edit keeps the last good config running. Real
files, real SQLite state; no server."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.config import load_config
from sidecar.config.holder import ConfigHolder
from sidecar.config.live import ConfigManager
from sidecar.ops.metrics import Metrics
from state import StateService, open_database, open_service
from state.vocabulary import CONFIG_EFFECTIVE, CONFIG_STATUS
from tests.waiting import wait_until

FILE = """\
# Written by hand: keep this comment.
server:
  port: 5001
  admin_token: admin-token-0123456789-abcdefghijklmnop
state:
  path: {db}
chatwoot:
  api_url: http://127.0.0.1:3000
  api_access_token: cw-token-0123456789
  webhook_secret: whsec-0123456789abcdef
mcp_crew:
  api_url: http://127.0.0.1:8000/crew  # the crew gateway
  api_key: crew-key-0123456789
processing:
  max_attempts: 4
routing:
  default_crew: suporte
  # first match wins
  rules:
    - {{channel: whatsapp, crew: whatsapp_crew}}
"""


class Managed:
    """A ConfigManager over config.yaml in a temporary folder, and what it changes."""

    def __init__(self, path: Path, state: StateService, env: dict[str, str]) -> None:
        self.path = path
        self.state = state
        self.holder = ConfigHolder(load_config(str(path), env))
        self.manager = ConfigManager(state, Metrics(), self.holder, str(path), env=env)
        self.applied: list[None] = []
        self.manager.listeners.append(lambda: self.applied.append(None))

    def on_disk(self) -> dict[str, Any]:
        return yaml.safe_load(self.path.read_text(encoding="utf-8"))

    def read(self, fn: Any) -> Any:
        db = open_database(self.state.path, readonly=True)
        try:
            return db.read(fn)
        finally:
            db.close()

    def edit(self, change: Any) -> None:
        doc = self.on_disk()
        change(doc)
        self.path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


@pytest.fixture
def env() -> dict[str, str]:
    return {}


@pytest.fixture
async def managed(tmp_path: Path, env: dict[str, str]) -> AsyncIterator[Managed]:
    path = tmp_path / "config.yaml"
    db = tmp_path / "data" / "connector.db"
    path.write_text(FILE.format(db=db), encoding="utf-8")
    state = open_service(str(db))
    try:
        yield Managed(path, state, env)
    finally:
        state.close()


async def test_a_post_is_merged_validated_applied_written_back_and_audited(managed: Managed) -> None:
    result = await managed.manager.post({"routing": {"rules": [{"channel": "facebook", "crew": "vendas"}]},
                                         "context": {"max_messages": 4}}, actor="api:test")
    assert result.status == 200, result.body
    assert result.body["status"] == "applied" and result.body["persisted"] is True
    assert sorted(result.body["changed"]) == ["context.max_messages", "routing.rules"]
    running = managed.holder.current
    assert [(r.crew, r.channel) for r in running.routing.rules] == [("vendas", ("facebook",))]
    assert running.context.max_messages == 4 and running.processing.max_attempts == 4  # the rest kept
    assert managed.applied == [None]  # listeners (e.g. re-probe peers) heard of it

    text = managed.path.read_text(encoding="utf-8")
    for comment in ("# Written by hand: keep this comment.", "# first match wins", "# the crew gateway"):
        assert comment in text
    assert managed.on_disk()["routing"]["rules"] == [{"channel": "facebook", "crew": "vendas"}]
    reread = load_config(str(managed.path), {})
    assert dataclasses.replace(reread, source_path=running.source_path) == running  # the file reads back the same
    [entry] = managed.read(lambda tx: tx.audit.config_changes())
    assert entry.actor == "api:test" and set(entry.keys) == {"context.max_messages", "routing.rules"}
    effective = managed.read(lambda tx: tx.documents.get(CONFIG_EFFECTIVE))
    assert effective["context"]["max_messages"] == 4
    assert effective["chatwoot"]["api_access_token"].startswith("****")


async def test_an_invalid_post_changes_nothing(managed: Managed) -> None:
    before, running = managed.path.read_text(encoding="utf-8"), managed.holder.current
    result = await managed.manager.post({"processing": {"max_attempts": 0}}, actor="api:test")
    assert (result.status, result.body["key"]) == (400, "processing.max_attempts")
    assert managed.path.read_text(encoding="utf-8") == before
    assert managed.holder.current is running and managed.applied == []
    assert managed.read(lambda tx: tx.audit.config_changes()) == []


async def test_a_restart_only_key_is_written_and_reported_not_applied(managed: Managed) -> None:
    result = await managed.manager.post({"server": {"port": 6001}}, actor="api:test")
    assert result.status == 200 and result.body["restart_required"] == ["server.port"]
    assert managed.holder.current.server.port == 5001
    assert managed.on_disk()["server"]["port"] == 6001
    assert any("server.port" in w and "restart" in w for w in managed.manager.warnings())


@pytest.mark.parametrize("env", [{"MCP_CREW_API_URL": "http://127.0.0.1:8100/from-env"}])
async def test_environment_overrides_still_win_after_a_post(managed: Managed) -> None:
    result = await managed.manager.post({"mcp_crew": {"api_url": "http://127.0.0.1:8200/posted"}}, actor="api:test")
    assert result.status == 200
    assert result.body["overridden_by_env"] == ["mcp_crew.api_url (env MCP_CREW_API_URL)"]
    assert managed.holder.current.mcp_crew.api_url == "http://127.0.0.1:8100/from-env"
    assert managed.on_disk()["mcp_crew"]["api_url"] == "http://127.0.0.1:8200/posted"


async def test_a_hand_edit_is_applied_and_a_broken_one_keeps_the_last_good_config(managed: Managed) -> None:
    managed.edit(lambda d: d["processing"].update(max_attempts=6))
    await managed.manager.check_file()
    assert managed.holder.current.processing.max_attempts == 6
    [entry] = managed.read(lambda tx: tx.audit.config_changes())
    assert entry.actor == "file" and entry.changes["processing.max_attempts"] == {"old": 4, "new": 6}

    good = managed.holder.current
    managed.edit(lambda d: d["processing"].update(max_attempts="many"))
    await managed.manager.check_file()
    assert managed.holder.current is good  # refused: the last good config keeps running
    assert managed.manager.error is not None and managed.manager.error.key == "processing.max_attempts"
    assert any("processing.max_attempts" in w for w in managed.manager.warnings())
    status = managed.read(lambda tx: tx.documents.get(CONFIG_STATUS))
    assert status["valid"] is False and "processing.max_attempts" in status["error"]
    # A post on top of the broken file is refused until the file is fixed.
    refused = await managed.manager.post({"context": {"max_messages": 3}}, actor="api:test")
    assert refused.status == 409 and "fix the file" in refused.body["error"]

    managed.edit(lambda d: d["processing"].update(max_attempts=5))
    await managed.manager.check_file()
    assert managed.manager.error is None and managed.holder.current.processing.max_attempts == 5
    assert managed.read(lambda tx: tx.documents.get(CONFIG_STATUS))["valid"] is True


async def test_an_emptied_file_is_not_all_defaults(managed: Managed) -> None:
    """A save that truncates first shows an empty file for a moment: it is refused, not applied
    as the defaults (which would drop the webhook secret and every URL)."""
    good = managed.holder.current
    managed.path.write_text("", encoding="utf-8")
    await managed.manager.check_file()
    assert managed.holder.current is good
    assert managed.manager.error is not None and "empty" in managed.manager.error.reason


async def test_the_watcher_picks_up_an_edit_by_itself(managed: Managed) -> None:
    watcher = asyncio.create_task(managed.manager.watch(interval=0.05))
    try:
        managed.edit(lambda d: d["routing"].update(default_crew="atendimento"))
        # Until the listeners heard of it too: they are told after the audit row is written, so
        # the running config changes a moment before.
        await wait_until(lambda: managed.holder.current.routing.default_crew == "atendimento" and managed.applied,
                         what="the edit applied by the watcher and its listeners told")
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    assert managed.applied == [None]


async def test_a_read_only_file_takes_the_change_live_and_says_it_is_not_kept(managed: Managed) -> None:
    before = managed.path.read_text(encoding="utf-8")
    managed.path.chmod(0o444)
    first = await managed.manager.post({"context": {"max_messages": 3}}, actor="api:test")
    second = await managed.manager.post({"processing": {"max_attempts": 5}}, actor="api:test")
    assert first.status == second.status == 200
    assert first.body["persisted"] is False and "read-only" in first.body["warning"]
    running = managed.holder.current
    assert (running.context.max_messages, running.processing.max_attempts) == (3, 5)  # built on each other
    assert managed.path.read_text(encoding="utf-8") == before
    assert any("not saved" in w for w in managed.manager.warnings())
