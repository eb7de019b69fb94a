"""Unit tests of the crew back-ends' parsers, plus probes and the registry against real servers."""

from __future__ import annotations

import json

import aiohttp
import pytest
from mcp.types import CallToolResult, TextContent, Tool

from sidecar.config import Config, CrewConfig, LocalAnswer, config_from_mapping
from sidecar.crew.amp import (
    AmpCrewBackend,
    _validation_reason,
    actions_from_output,
    amp_inputs,
    callback_token,
    kickoff_id_from,
    next_poll_interval,
    normalise_status,
)
from sidecar.crew.base import CrewError, CrewRequest
from sidecar.crew.local import LocalCrewBackend
from sidecar.crew.mcp import McpCrewBackend
from sidecar.crew.mcp_results import (
    actions_from_result,
    arguments_for,
    kickoff_id_from_result,
    status_arguments,
    tool_error,
)
from sidecar.crew.registry import CrewRegistry
from simulators.fake_amp import FakeAmp
from simulators.fake_mcp import FakeMcp
from tests.harness import free_port

ENVELOPE = {
    "schema": "chatwoot-crew/v1",
    "request_id": "req-1",
    "crew": "vendas",
    "routing": {"crew": "vendas", "source": "rules"},
    "chatwoot": {"account_id": 7, "conversation_id": 42, "channel": "whatsapp", "labels": ["vip"]},
    "contact": {"id": 5, "name": "João"},
    "messages": [{"id": 1, "content": "oi"}, {"id": 2, "content": "quanto custa?"}],
    "history": [{"role": "bot", "content": "Olá!"}],
    "callback_url": "",
}


# -- status normalisation ------------------------------------------------------------------------
@pytest.mark.parametrize(("doc", "state"), [
    ({"status": "running", "current_task": "t"}, "running"),
    ({"status": "completed", "result": {"output": "x"}}, "completed"),
    ({"status": "error", "error": "boom"}, "failed"),
    ({"state": "STARTED"}, "running"),
    ({"state": "SUCCESS", "result": "x"}, "completed"),
    ({"state": "Failed"}, "failed"),
    ({"state": "pending"}, "running"),
    ({"state": "queued"}, "running"),
    ({"status": "something-new"}, "running"),  # unknown: keep waiting (the deadline bounds it)
])
def test_normalise_status_both_shapes(doc: dict[str, object], state: str) -> None:
    assert normalise_status(doc)[0] == state


def test_normalise_status_output_and_error() -> None:
    assert normalise_status({"status": "completed", "result": {"output": "hi", "tasks": []}})[1] == "hi"
    assert normalise_status({"state": "SUCCESS", "result": "plain"})[1] == "plain"
    assert normalise_status({"status": "error", "error": "LLM down"})[2] == "LLM down"
    with pytest.raises(CrewError):
        normalise_status(["not", "an", "object"])


# -- output extraction ---------------------------------------------------------------------------
def test_actions_from_output_shapes() -> None:
    reply = {"type": "reply", "content": "Olá"}
    assert actions_from_output("Olá") == (reply,)
    assert actions_from_output(json.dumps({"actions": [reply]})) == (reply,)
    assert actions_from_output("```json\n" + json.dumps({"actions": [reply]}) + "\n```") == (reply,)
    assert actions_from_output(json.dumps([reply])) == (reply,)
    assert actions_from_output({"actions": [reply, {"type": "labels", "add": ["lead"]}]})[1]["type"] == "labels"
    assert actions_from_output({"auto_reply": True, "reply_content": "Olá"}) == (reply,)
    assert actions_from_output({"output": "Olá"}) == (reply,)
    assert actions_from_output({"actions": []}) == ()  # an explicit "say nothing"
    # JSON that is not a reply document is text the crew wants said.
    assert actions_from_output('{"price": 10}') == ({"type": "reply", "content": '{"price": 10}'},)
    assert actions_from_output("[não é json") == ({"type": "reply", "content": "[não é json"},)


@pytest.mark.parametrize("empty", [None, "", "   "])
def test_actions_from_output_without_output_is_an_error(empty: object) -> None:
    with pytest.raises(CrewError) as err:
        actions_from_output(empty)
    assert not err.value.retryable


def test_invalid_actions_are_refused() -> None:
    with pytest.raises(CrewError):
        actions_from_output({"actions": [{"type": "explode"}]})


# -- inputs building -----------------------------------------------------------------------------
def test_amp_inputs_are_strings_only() -> None:
    inputs = amp_inputs(ENVELOPE)
    assert all(isinstance(v, str) for v in inputs.values())
    assert inputs["message"] == "oi\nquanto custa?"
    assert inputs["channel"] == "whatsapp" and inputs["conversation_id"] == "42"
    assert inputs["contact_name"] == "João" and inputs["request_id"] == "req-1"
    assert json.loads(inputs["history_json"]) == ENVELOPE["history"]
    context = json.loads(inputs["context_json"])
    assert context["chatwoot"]["labels"] == ["vip"] and context["crew"] == "vendas"


def test_amp_inputs_of_an_empty_envelope() -> None:
    inputs = amp_inputs({})
    assert inputs["message"] == "" and inputs["history_json"] == "[]"


def test_kickoff_ids_callback_tokens_and_backoff() -> None:
    assert kickoff_id_from({"kickoff_id": "abc"}) == "abc"
    assert kickoff_id_from({"result": {"id": 12}}) == "12"
    assert kickoff_id_from({"nothing": 1}) is None
    assert callback_token("k", "r1") == callback_token("k", "r1") != callback_token("k", "r2")
    assert callback_token("k", "r1") != callback_token("other", "r1")
    assert next_poll_interval(2, 0) == 2
    assert next_poll_interval(2, 40) == 10
    assert next_poll_interval(2, 3600) == 30
    assert next_poll_interval(60, 3600) == 60  # a configured interval above the cap is kept


def test_422_reason_names_missing_inputs() -> None:
    body = json.dumps({"error": "Validation Error", "message": "Missing required inputs",
                       "details": {"missing_inputs": ["budget", "city"]}})
    assert _validation_reason(body) == "Missing required inputs: missing inputs budget, city"
    assert _validation_reason("not json") == "not json"


# -- MCP result parsing and arguments --------------------------------------------------------------
def _text(text: str, *, error: bool = False, structured: dict[str, object] | None = None) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], isError=error,
                          structuredContent=structured)


def test_mcp_result_shapes() -> None:
    reply = {"type": "reply", "content": "Olá"}
    assert actions_from_result("t", _text("ignored", structured={"actions": [reply]})) == (reply,)
    assert actions_from_result("t", _text(json.dumps({"actions": [reply]}))) == (reply,)
    assert actions_from_result("t", _text(json.dumps([reply]))) == (reply,)
    assert actions_from_result("t", _text("Olá")) == (reply,)
    # FastMCP wraps non-object return values as {"result": …}.
    assert actions_from_result("t", _text("x", structured={"result": "Olá"})) == (reply,)


def test_mcp_tool_error_policy() -> None:
    final = tool_error("t", _text("invalid product id", error=True))
    assert not final.retryable and "invalid product id" in str(final)
    assert tool_error("t", _text("upstream timed out, try again", error=True)).retryable
    assert tool_error("t", _text("rate limit reached", error=True)).retryable
    with pytest.raises(CrewError):
        actions_from_result("t", _text("boom", error=True))


def test_mcp_kickoff_id_from_result() -> None:
    assert kickoff_id_from_result("k", _text("{}", structured={"kickoff_id": "run-1"})) == "run-1"
    assert kickoff_id_from_result("k", _text(json.dumps({"kickoff_id": "run-2"}))) == "run-2"
    uid = "0b5e4f9a-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
    assert kickoff_id_from_result("k", _text(f"{{'kickoff_id': '{uid}'}}")) == uid
    with pytest.raises(CrewError):
        kickoff_id_from_result("k", _text("no id here"))


def _tool(name: str, props: dict[str, object], required: list[str] | None = None) -> Tool:
    schema: dict[str, object] = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    return Tool(name=name, inputSchema=schema)


def test_mcp_arguments_follow_the_tool_schema() -> None:
    envelope_tool = _tool("handle_message", {"messages": {}, "crew": {}})
    assert arguments_for(envelope_tool, ENVELOPE, kickoff=False) == ENVELOPE
    wrapped = _tool("handle_message", {"envelope": {"type": "object"}})
    assert arguments_for(wrapped, ENVELOPE, kickoff=False) == {"envelope": ENVELOPE}
    kickoff = _tool("kickoff_crew", {"inputs": {"type": "object"}})
    args = arguments_for(kickoff, ENVELOPE, kickoff=True)
    assert set(args) == {"inputs"} and args["inputs"]["message"] == "oi\nquanto custa?"
    assert status_arguments(_tool("get_crew_status", {"crew_id": {}}), "r") == {"crew_id": "r"}
    assert status_arguments(_tool("s", {"job": {}, "verbose": {}}, ["job"]), "r") == {"job": "r"}
    assert status_arguments(None, "r") == {"crew_id": "r"}


# -- local crews ---------------------------------------------------------------------------------
def test_local_crew_matching() -> None:
    crew = CrewConfig(name="faq", backend="local",
                      answers=(LocalAnswer(("horário", "hours"), "8h-18h"), LocalAnswer(("preço",), "R$ 10")),
                      handoff_keywords=("atendente", "falar com humano"), handoff_message="Já chamo alguém.")
    backend = LocalCrewBackend(crew)
    assert backend.answer("QUAL O HORARIO?") == ({"type": "reply", "content": "8h-18h"},)
    assert backend.answer("Preço e horário") == ({"type": "reply", "content": "8h-18h"},)  # first answer wins
    assert backend.answer("quero Falar com HUMANO agora")[0]["type"] == "handoff"
    assert backend.answer("atendente")[0]["message"] == "Já chamo alguém."
    assert backend.answer("apreço") == ()  # whole words only; no fallback: say nothing


# -- probes and registry against real servers ---------------------------------------------------------
async def test_probes_are_meaningful_and_never_raise() -> None:
    async with aiohttp.ClientSession() as session, FakeMcp() as mcp_fake, FakeAmp() as amp_fake:
        mcp_up = McpCrewBackend(CrewConfig(name="m", backend="mcp", url=mcp_fake.url, token=mcp_fake.token))
        mcp_missing = McpCrewBackend(CrewConfig(name="m", backend="mcp", url=mcp_fake.url, token=mcp_fake.token,
                                                tool="no_such_tool"))
        mcp_down = McpCrewBackend(CrewConfig(name="m", backend="mcp", url=f"http://127.0.0.1:{free_port()}/mcp"))
        amp_up = AmpCrewBackend(session, CrewConfig(name="a", backend="crewai_amp", url=amp_fake.url,
                                                    token=amp_fake.token), public_url="", callback_secret="")
        amp_down = AmpCrewBackend(session, CrewConfig(name="a", backend="crewai_amp",
                                                      url=f"http://127.0.0.1:{free_port()}"),
                                  public_url="", callback_secret="")
        try:
            up = await mcp_up.probe()
            assert up.ok and up.detail == "3 tools"
            missing = await mcp_missing.probe()
            assert not missing.ok and "no_such_tool" in missing.detail
            assert not (await mcp_down.probe()).ok
            assert (await amp_up.probe()).ok
            assert not (await amp_down.probe()).ok
            local = LocalCrewBackend(CrewConfig(name="l", backend="local", fallback_reply="x"))
            assert (await local.probe()).ok
        finally:
            for backend in (mcp_up, mcp_missing, mcp_down):
                await backend.close()


async def test_mcp_backend_reuses_one_session_and_close_ends_it() -> None:
    async with FakeMcp() as fake:
        backend = McpCrewBackend(CrewConfig(name="m", backend="mcp", url=fake.url, token=fake.token))
        for _ in range(3):
            await backend.submit(CrewRequest("r", "m", ENVELOPE, 1))
        assert fake.sessions_started == 1
        await backend.close()
        with pytest.raises(CrewError):
            await backend.submit(CrewRequest("r", "m", ENVELOPE, 1))


async def test_registry_keeps_unchanged_backends_and_closes_replaced_ones() -> None:
    def config(url: str) -> Config:
        return config_from_mapping(env={}, raw={
            "crews": {"faq": {"backend": "local", "fallback_reply": "x"},
                      "vendas": {"backend": "mcp", "url": url}},
        })

    async with aiohttp.ClientSession() as session:
        registry = CrewRegistry(session)
        registry.refresh(config("http://127.0.0.1:9/mcp"))
        first = registry.all_backends()
        assert {name: b.kind for name, b in first.items()} == {"default": "http", "faq": "local", "vendas": "mcp"}
        registry.refresh(config("http://127.0.0.1:9/mcp"))
        assert registry.backend_for("vendas") is first["vendas"]
        registry.refresh(config("http://127.0.0.1:10/mcp"))
        assert registry.backend_for("vendas") is not first["vendas"]
        assert registry.backend_for("faq") is first["faq"]
        assert registry.backend_for("unlisted").kind == "http"
        await registry.close()
