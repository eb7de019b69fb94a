"""Hand edits of config.yaml take effect without a restart; a broken edit keeps the last good one."""

from __future__ import annotations

from typing import Any

import yaml

from simulators import FakeChatwoot, FakeCrew
from tests.harness import ADMIN_TOKEN, InProcessSidecar
from tests.waiting import wait_until

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def _health(sidecar: InProcessSidecar) -> dict[str, Any]:
    return (await sidecar.client.get("/health"))[1]


def _edit(proc: InProcessSidecar, change: Any) -> None:
    doc = yaml.safe_load(proc.config_path.read_text(encoding="utf-8"))
    change(doc)
    proc.config_path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


async def _config_status(proc: InProcessSidecar) -> dict[str, Any]:
    return proc.query(lambda s: s.documents.get("config.status")) or {}


async def _answered_by(chatwoot: FakeChatwoot, crew: FakeCrew, channel: str) -> str:
    conv = chatwoot.open_conversation(channel)
    status, _ = await chatwoot.customer_says(conv, "olá, tudo bem?")
    assert status == 200
    await chatwoot.wait_for(lambda: len(chatwoot.replies(conv.display_id)) == 1)
    return [r for r in crew.crew_requests() if r["chatwoot"]["conversation_id"] == conv.display_id][-1]["crew"]


async def test_a_valid_hand_edit_applies_and_is_audited(
    sidecar: InProcessSidecar, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    assert await _answered_by(chatwoot, crew, "whatsapp") == "whatsapp_crew"
    _edit(sidecar, lambda d: d["routing"]["rules"].insert(0, {"channel": "whatsapp", "crew": "edited_crew"}))

    await wait_until(lambda: _audit(sidecar), until=lambda entries: len(entries) == 1, what="audit entry of the edit")
    [entry] = await _audit(sidecar)
    assert entry.actor == "file" and entry.keys == ("routing.rules",)
    assert await _answered_by(chatwoot, crew, "whatsapp") == "edited_crew"
    await wait_until(lambda: _config_status(sidecar), until=lambda st: st["valid"] is True, what="kv config.status")


async def _audit(proc: InProcessSidecar) -> list[Any]:
    return proc.query(lambda s: s.audit.config_changes())


async def test_a_broken_edit_keeps_the_old_config_and_fixing_it_recovers(
    sidecar: InProcessSidecar, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    good = sidecar.config_path.read_text(encoding="utf-8")
    _edit(sidecar, lambda d: d["processing"].update(max_attempts="many"))

    broken = await wait_until(lambda: _health(sidecar), until=lambda b: any("processing.max_attempts" in w for w in b["warnings"]),
                              what="/health naming the bad key")
    assert broken["status"] == "degraded"
    # /health reads the manager; the kv row for the console is written right after: wait for it.
    status = await wait_until(lambda: _config_status(sidecar), until=lambda st: st.get("valid") is False,
                              what="kv config.status invalid")
    assert "processing.max_attempts" in status["error"]
    line = await sidecar.wait_for_output("config.invalid")
    assert "key=processing.max_attempts" in line and "kept the last good config" in line

    # Still serving with the last good config.
    assert await _answered_by(chatwoot, crew, "facebook") == "facebook_crew"
    _, config, _ = await sidecar.client.get("/config", headers=AUTH)
    assert config["config"]["processing"]["max_attempts"] == 4 and config["meta"]["valid"] is False
    # An API change on top of a broken file is refused until the file is fixed.
    status_code, body, _ = await sidecar.client.post("/config", json={"context": {"max_messages": 3}}, headers=AUTH)
    assert status_code == 409 and "fix the file" in body["error"]

    # A second save of the same broken file is not logged again.
    sidecar.config_path.write_text(sidecar.config_path.read_text() + "\n", encoding="utf-8")

    sidecar.config_path.write_text(good.replace("max_attempts: 4", "max_attempts: 5"), encoding="utf-8")
    fixed = await wait_until(lambda: _health(sidecar), until=lambda b: not any("config.yaml" in w for w in b["warnings"]),
                             what="/health after the fix")
    assert fixed["status"] == "ok"
    # kv is written right after the change is applied (and audited): wait for it, too.
    await wait_until(lambda: _config_status(sidecar), until=lambda st: st["valid"] is True, what="kv config.status")
    assert sum("config.invalid" in line for line in sidecar.output) == 1
    await sidecar.wait_for_output("config.recovered")
    [entry] = await _audit(sidecar)
    assert entry.keys == ("processing.max_attempts",)
    assert entry.changes["processing.max_attempts"] == {"old": 4, "new": 5}


async def test_a_yaml_syntax_error_names_the_line(sidecar: InProcessSidecar) -> None:
    text = sidecar.config_path.read_text(encoding="utf-8")
    sidecar.config_path.write_text(text + "routing: [unclosed\n", encoding="utf-8")
    body = await wait_until(lambda: _health(sidecar), until=lambda b: any("invalid YAML" in w for w in b["warnings"]),
                            what="/health naming the YAML error")
    [warning] = [w for w in body["warnings"] if "invalid YAML" in w]
    assert "line" in warning and str(sidecar.config_path) in warning


async def test_a_deleted_file_keeps_the_running_config(sidecar: InProcessSidecar, chatwoot: FakeChatwoot,
                                                       crew: FakeCrew) -> None:
    sidecar.config_path.unlink()
    await wait_until(lambda: _health(sidecar), until=lambda b: any("file not found" in w for w in b["warnings"]),
                     what="/health naming the missing file")
    assert await _answered_by(chatwoot, crew, "instagram") == "instagram_crew"


async def test_an_empty_file_while_running_keeps_the_last_good_config(
    sidecar: InProcessSidecar, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    """A truncate-then-write save shows an empty file for a moment: it must not be applied as
    "all defaults" (no webhook secret: every webhook 401; no crew URL: dead letters)."""
    good = sidecar.config_path.read_text(encoding="utf-8")
    for blank in ("", "\n  \n# being rewritten\n"):
        sidecar.config_path.write_text(blank, encoding="utf-8")
        body = await wait_until(lambda: _health(sidecar), until=lambda b: any("the file is empty" in w for w in b["warnings"]),
                                what="/health naming the empty file")
        assert body["status"] == "degraded"
        # Still the last good config: signed webhooks verify, the crew is still called.
        assert await _answered_by(chatwoot, crew, "whatsapp") == "whatsapp_crew"
        # An API change is refused too: on top of an empty file it would drop every secret.
        status, answer, _ = await sidecar.client.post("/config", json={"context": {"max_messages": 3}},
                                                      headers=AUTH)
        assert status == 409 and "the file is empty" in answer["error"]
    line = await sidecar.wait_for_output("config.invalid")
    assert "empty" in line and "kept the last good config" in line

    sidecar.config_path.write_text(good, encoding="utf-8")
    await wait_until(lambda: _health(sidecar), until=lambda b: not any("config.yaml" in w for w in b["warnings"]),
                     what="/health after the file has content again")
    await sidecar.wait_for_output("config.recovered")
    assert await _audit(sidecar) == []  # nothing was ever applied from the empty file
