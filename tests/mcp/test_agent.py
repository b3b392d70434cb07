"""End to end: the agent sees MCP tools, the model calls one, the result goes back to the model."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from agent.daemon import Runtime, build_runtime
from tests.fakes.llm import FakeLLM, Turn
from tests.fakes.runtime import Chat, make_config
from tests.mcp.helpers import BASIC


def basic_runtime(tmp_path: Path, fake_llm: FakeLLM, api: str = "anthropic") -> Runtime:
    """A runtime whose one MCP server is tests/mcp/servers/basic.py over stdio."""
    return build_runtime(make_config(tmp_path, fake_llm, api, mcp_servers=[
        {"name": "basic", "command": sys.executable, "args": [str(BASIC)]}]))


def tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [block for message in body["messages"] if isinstance(message["content"], list)
            for block in message["content"] if block.get("type") == "tool_result"]


async def test_the_model_calls_an_mcp_tool_through_the_agent(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(Turn(tool_calls=[("mcp__basic__echo", {"text": "hello over mcp"})]),
                    Turn(tool_calls=[("mcp__basic__picture", {})]),
                    Turn(text="The server echoed and drew."))
    runtime = basic_runtime(tmp_path, fake_llm)
    async with runtime.running():
        reply = await Chat(runtime).ask("use the echo tool", timeout=30)
    assert reply.text == "The server echoed and drew."

    tools = {tool["name"]: tool for tool in fake_llm.requests[0].body["tools"]}
    echo = tools["mcp__basic__echo"]
    assert echo["description"] == "Repeat the text back."
    assert echo["input_schema"]["properties"]["text"]["type"] == "string"
    assert echo["input_schema"]["required"] == ["text"]

    first = tool_results(fake_llm.requests[1].body)[-1]
    assert first["content"] in ("hello over mcp", [{"type": "text", "text": "hello over mcp"}])
    assert not first.get("is_error")
    second = json.dumps(tool_results(fake_llm.requests[2].body)[-1])
    assert "a red pixel" in second and "iVBORw0KGgo" in second  # the image's bytes reached the model
    assert list((runtime.workspace / "inbox" / "mcp").glob("*.png"))


async def test_a_failing_mcp_server_does_not_stop_the_agent(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(Turn(text="Still here."))
    config = make_config(tmp_path, fake_llm, mcp_servers=[
        {"name": "broken", "command": "/nonexistent/mcp-server"}])
    runtime = build_runtime(config)
    async with runtime.running():
        reply = await Chat(runtime).ask("hi")
    assert reply.text == "Still here."
    assert not [t for t in fake_llm.requests[0].body.get("tools", []) if t["name"].startswith("mcp__")]


async def test_an_image_from_a_tool_reaches_an_openai_compatible_model(tmp_path: Path, fake_llm: FakeLLM) -> None:
    """Tool messages carry text only there, so the image follows in a user message."""
    fake_llm.script(Turn(tool_calls=[("mcp__basic__picture", {})]), Turn(text="A red pixel."))
    runtime = basic_runtime(tmp_path, fake_llm, "openai")
    async with runtime.running():
        reply = await Chat(runtime).ask("draw", timeout=30)
    assert reply.text == "A red pixel."
    messages = fake_llm.requests[1].body["messages"]
    tool = next(m for m in messages if m["role"] == "tool")
    assert "a red pixel" in tool["content"]
    after = messages[messages.index(tool) + 1]
    assert after["role"] == "user" and any(
        part.get("type") == "image_url" and part["image_url"]["url"].startswith("data:image/png;base64,iVBORw0KGgo")
        for part in after["content"])
