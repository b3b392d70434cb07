"""The tool registry: schemas from signatures, argument validation, and failures as data."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Literal

import pytest

from agent.config import ExecConfig, ToolsConfig, WebConfig
from agent.errors import ToolError
from agent.tools import ToolContext, ToolRegistry, builtin_registry
from agent.tools.registry import parse_docstring, spec_from_function
from agent.types import ToolCall, ToolSpec


async def search(ctx: ToolContext, query: str, limit: int = 10, scale: float = 1.0,
                 exact: bool = False, tags: list[str] | None = None,
                 mode: Literal["fast", "deep"] = "fast", note: str | None = None) -> str:
    """Search the notes for a phrase.

    Longer explanation that is not part of the description.

    Args:
        query: What to look for.
        limit: How many hits to return,
            at most.
        scale (float): A weight.
        mode: How hard to look.

    Returns:
        The hits.
    """
    return f"{query}|{limit}|{scale!r}|{exact}|{tags}|{mode}|{note}"


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    return ToolContext(workspace=tmp_path, config=ToolsConfig(max_result_chars=500))


@pytest.fixture
def registry() -> ToolRegistry:
    reg = ToolRegistry()
    reg.register(search, read_only=True)

    @reg.tool()
    async def boom(ctx: ToolContext) -> str:
        """Always fails with a bug."""
        raise KeyError("secret-internal-detail")

    @reg.tool(name="refuse")
    async def refuse_tool(ctx: ToolContext, why: str) -> str:
        """Always refuses."""
        raise ToolError(f"refused because {why}")

    @reg.tool()
    async def chatty(ctx: ToolContext, size: int) -> str:
        """Returns a lot of text."""
        return "x" * size

    return reg


def call(name: str, error: str | None = None, **arguments: Any) -> ToolCall:
    return ToolCall(id="call_1", name=name, arguments=arguments, error=error)


def test_schema_from_signature_and_docstring() -> None:
    spec = spec_from_function(search)
    assert spec.name == "search"
    assert spec.description == "Search the notes for a phrase."
    params = spec.parameters
    assert params["type"] == "object" and params["additionalProperties"] is False
    assert params["required"] == ["query"]
    props = params["properties"]
    assert "ctx" not in props
    assert props["query"] == {"type": "string", "description": "What to look for."}
    assert props["limit"] == {"type": "integer", "description": "How many hits to return, at most.",
                              "default": 10}
    assert props["scale"]["type"] == "number" and props["scale"]["description"] == "A weight."
    assert props["exact"] == {"type": "boolean", "default": False}
    assert props["tags"] == {"type": "array", "items": {"type": "string"}}
    assert props["mode"] == {"type": "string", "enum": ["fast", "deep"], "description": "How hard to look.",
                             "default": "fast"}
    assert props["note"] == {"type": "string"}


def test_parse_docstring_stops_at_next_section() -> None:
    summary, args = parse_docstring("One line.\nSecond line.\n\nArgs:\n    a: first\n\nReturns:\n    b: no")
    assert summary == "One line. Second line."
    assert args == {"a": "first"}


def test_unsupported_annotations_fail_at_registration() -> None:
    async def bad(ctx: ToolContext, data: dict[str, int]) -> str:
        """Takes a dict."""
        return ""

    async def no_doc(ctx: ToolContext) -> str:
        return ""

    def not_async(ctx: ToolContext) -> str:
        """Sync."""
        return ""

    reg = ToolRegistry()
    with pytest.raises(TypeError, match="parameter data"):
        reg.register(bad)
    with pytest.raises(ValueError, match="docstring"):
        reg.register(no_doc)
    with pytest.raises(TypeError, match="async"):
        reg.register(not_async)  # type: ignore[arg-type]
    reg.register(search)
    with pytest.raises(ValueError, match="already registered"):
        reg.register(search)


def test_specs_sorted_and_read_only(registry: ToolRegistry) -> None:
    assert [s.name for s in registry.specs()] == ["boom", "chatty", "refuse", "search"]
    assert registry.is_read_only("search")
    assert not registry.is_read_only("boom")
    assert not registry.is_read_only("nope")


async def test_run_passes_validated_arguments(registry: ToolRegistry, ctx: ToolContext) -> None:
    result = await registry.run(call("search", query="cats", limit=3, scale=2, tags=["a"], mode="deep",
                                     note=None), ctx)
    assert result == {"type": "tool_result", "tool_use_id": "call_1",
                      "content": "cats|3|2.0|False|['a']|deep|None", "is_error": False}


async def test_unknown_tool_lists_the_tools(registry: ToolRegistry, ctx: ToolContext) -> None:
    result = await registry.run(call("serch", query="x"), ctx)
    assert result["is_error"] is True
    assert result["content"] == "Unknown tool 'serch'. Available tools: boom, chatty, refuse, search."


async def test_invalid_json_arguments(registry: ToolRegistry, ctx: ToolContext) -> None:
    result = await registry.run(call("search", error="Expecting ',' delimiter"), ctx)
    assert result["is_error"] is True
    assert "not valid JSON" in result["content"] and "Expecting ',' delimiter" in result["content"]


@pytest.mark.parametrize(("arguments", "expected"), [
    ({}, "Missing required parameter 'query' (a string)"),
    ({"query": None}, "Missing required parameter 'query'"),
    ({"query": 5}, "Parameter 'query' of tool search must be a string, got integer 5"),
    ({"query": "x", "limit": "3"}, "Parameter 'limit' of tool search must be an integer, got string '3'"),
    ({"query": "x", "limit": 2.5}, "'limit' of tool search must be an integer, got number"),
    ({"query": "x", "limit": True}, "'limit' of tool search must be an integer, got boolean"),
    ({"query": "x", "exact": "yes"}, "'exact' of tool search must be true or false"),
    ({"query": "x", "tags": "a"}, "'tags' of tool search must be an array of strings"),
    ({"query": "x", "tags": ["a", 1]}, "'tags' of tool search must be an array of strings"),
    ({"query": "x", "mode": "slow"}, "'mode' of tool search must be one of 'fast', 'deep'"),
    ({"query": "x", "colour": "red"}, "Unknown parameter 'colour' for tool search; it takes: query, limit"),
])
async def test_invalid_arguments_name_the_parameter(registry: ToolRegistry, ctx: ToolContext,
                                                    arguments: dict[str, Any], expected: str) -> None:
    result = await registry.run(ToolCall("call_1", "search", arguments), ctx)
    assert result["is_error"] is True
    assert expected in result["content"]


async def test_tool_error_becomes_is_error(registry: ToolRegistry, ctx: ToolContext) -> None:
    result = await registry.run(call("refuse", why="it is Sunday"), ctx)
    assert result == {"type": "tool_result", "tool_use_id": "call_1",
                      "content": "refused because it is Sunday", "is_error": True}


async def test_unexpected_exception_logs_incident(registry: ToolRegistry, ctx: ToolContext,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="agent.tools.registry"):
        result = await registry.run(call("boom"), ctx)
    assert result["is_error"] is True
    match = re.fullmatch(r"Internal error in tool boom \(incident ([0-9a-f]{8})\); "
                         r"the owner can find it in the log\.", result["content"])
    assert match, result["content"]
    assert "secret-internal-detail" not in result["content"]
    [record] = caplog.records
    assert match.group(1) in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is KeyError
    assert registry.incidents == 1


async def test_long_results_are_truncated_with_marker(registry: ToolRegistry, ctx: ToolContext) -> None:
    result = await registry.run(call("chatty", size=12_845), ctx)
    assert result["is_error"] is False
    assert result["content"] == "x" * 500 + "\n[... truncated 12345 characters ...]"
    short = await registry.run(call("chatty", size=500), ctx)
    assert short["content"] == "x" * 500


async def test_add_raw_schema_tool(ctx: ToolContext) -> None:
    seen: list[dict[str, Any]] = []

    async def handler(ctx: ToolContext, arguments: dict[str, Any]) -> str:
        seen.append(arguments)
        return "ok"

    reg = ToolRegistry()
    schema = {"type": "object", "properties": {"n": {"type": "number"}, "opts": {"type": "object"}},
              "required": ["n"]}
    reg.add(ToolSpec("mcp_calc", "A remote calculator.", schema), handler, read_only=True)
    assert (await reg.run(call("mcp_calc", n=2, opts={"a": 1}, extra=True), ctx))["content"] == "ok"
    assert seen == [{"n": 2.0, "opts": {"a": 1}, "extra": True}]
    bad = await reg.run(call("mcp_calc", n="two"), ctx)
    assert bad["is_error"] and "'n' of tool mcp_calc must be a number" in bad["content"]
    with pytest.raises(ValueError, match="tool name"):
        reg.add(ToolSpec("has space", "x", schema), handler)


def test_builtin_registry_follows_config() -> None:
    names = [s.name for s in builtin_registry(ToolsConfig()).specs()]
    assert names == ["edit_file", "list_dir", "read_file", "search_files", "web_fetch", "write_file"]
    everything = builtin_registry(ToolsConfig(exec=ExecConfig(enabled=True)))
    assert "exec" in [s.name for s in everything.specs()]
    assert not everything.is_read_only("exec") and everything.is_read_only("web_fetch")
    files_only = builtin_registry(ToolsConfig(web=WebConfig(enabled=False)))
    assert "web_fetch" not in [s.name for s in files_only.specs()]
    assert files_only.is_read_only("read_file") and not files_only.is_read_only("write_file")


def test_builtin_specs_are_stable() -> None:
    assert builtin_registry(ToolsConfig()).specs() == builtin_registry(ToolsConfig()).specs()
