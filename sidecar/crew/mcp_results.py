"""Provides reading an MCP tool's answer and building a tool's arguments (pure functions).

A crew's answer is read from ``structuredContent``, else from JSON in the text content, else
from the plain text; the arguments follow the tool's input schema when it declares one.
"""

from __future__ import annotations

import json
import re
from typing import Any

from mcp.types import CallToolResult, TextContent, Tool

from sidecar.crew.amp import actions_from_output, amp_inputs, kickoff_id_from
from sidecar.crew.base import CrewError

# Words in a tool error's text that say trying again later may work. Everything else is final:
# a tool that ran and reported a failure will most likely fail the same way on a retry, and each
# retry re-runs a crew (cost, duplicate side effects), so the failure policy hands the
# conversation to a human instead.
_TRANSIENT_WORDS = ("timeout", "timed out", "temporar", "rate limit", "rate-limit", "try again", "retry",
                    "unavailable", "overloaded", "too many requests", "429", "502", "503", "504")
_ID_PARAMS = ("crew_id", "kickoff_id", "execution_id", "run_id", "id", "task_id")


def result_text(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent)).strip()


def tool_error(name: str, result: CallToolResult) -> CrewError:
    """``isError: true``: final unless the tool's text says the failure is temporary."""
    text = result_text(result) or "no detail"
    retryable = any(word in text.lower() for word in _TRANSIENT_WORDS)
    return CrewError(f"MCP tool {name} failed: {text}"[:300], retryable=retryable, counts_against_backend=False)


def result_document(result: CallToolResult) -> Any:
    """The tool's answer as data: ``structuredContent`` (unwrapping FastMCP's ``{"result": …}``
    for non-object return types), else JSON in the text, else the text itself."""
    structured = result.structuredContent
    if isinstance(structured, dict) and structured:
        if set(structured) == {"result"}:
            return structured["result"]
        return structured
    text = result_text(result)
    if text[:1] in "{[":
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def actions_from_result(name: str, result: CallToolResult) -> tuple[dict[str, Any], ...]:
    if result.isError:
        raise tool_error(name, result)
    doc = result_document(result)
    if isinstance(doc, dict) and not isinstance(doc.get("actions"), list) and result.structuredContent:
        # Structured, but not a reply document: the text may still carry one.
        text = result_text(result)
        if text:
            return actions_from_output(text)
    return actions_from_output(doc)


def kickoff_id_from_result(name: str, result: CallToolResult) -> str:
    if result.isError:
        raise tool_error(name, result)
    doc = result_document(result)
    found = kickoff_id_from(doc)
    if found is None and isinstance(doc, str):
        # Wrappers sometimes print the AMP answer as text ("{'kickoff_id': '…'}").
        match = re.search(r"kickoff_id\W+([A-Za-z0-9-]{6,})", doc) or re.search(
            r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", doc)
        if match:
            found = match.group(match.lastindex or 0)
    if found is None:
        raise CrewError(f"MCP tool {name} returned no run id", retryable=False, counts_against_backend=False)
    return found


def arguments_for(tool: Tool | None, envelope: dict[str, Any], *, kickoff: bool) -> dict[str, Any]:
    """The arguments of the configured tool, adapted to its input schema when we can tell.

    * a kickoff tool with an ``inputs`` parameter (CrewAI's) gets AMP's string-only inputs;
    * a tool with one parameter that is not an envelope key (``envelope``, ``request``) gets
      the whole envelope under that name;
    * otherwise the envelope's keys are the arguments.
    """
    props = _properties(tool)
    if kickoff:
        inputs = amp_inputs(envelope)
        if "inputs" in props or not props:
            args: dict[str, Any] = {"inputs": inputs}
            if "meta" in props:
                args["meta"] = {"request_id": envelope.get("request_id"), "source": "chatwoot-sidecar"}
            return args
        return {key: value for key, value in inputs.items() if key in props} or dict(inputs)
    if len(props) == 1:
        (only,) = props
        if only not in envelope:
            return {only: envelope}
    return dict(envelope)


def status_arguments(tool: Tool | None, run_id: str) -> dict[str, Any]:
    """``{crew_id: …}`` (CrewAI's server), or whichever id parameter the status tool declares."""
    props = _properties(tool)
    for name in _ID_PARAMS:
        if name in props:
            return {name: run_id}
    required = tool.inputSchema.get("required") if tool is not None else None
    if isinstance(required, list) and required:
        return {str(required[0]): run_id}
    if len(props) == 1:
        return {next(iter(props)): run_id}
    return {"crew_id": run_id}


def _properties(tool: Tool | None) -> dict[str, Any]:
    props = tool.inputSchema.get("properties") if tool is not None else None
    return props if isinstance(props, dict) else {}
