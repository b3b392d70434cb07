"""Real stdio MCP servers (tests/mcp/servers/basic.py) through the manager and the tool registry.

Three copies start once for this module: "basic", "only" (tool filters) and "live" (whose tool
list one test changes). Tests that break a server are in test_failures.py.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from agent.errors import ToolError
from agent.mcp import MCPManager
from tests.mcp.helpers import Harness, stdio, until

pytestmark = pytest.mark.asyncio(loop_scope="module")

SECRET = "sk-ant-api03-never-leak-this-0123456789"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Harness]:
    h = Harness(tmp_path_factory.mktemp("shared") / "ws")
    with pytest.MonkeyPatch.context() as mp:  # reverie's own secrets, which the server must not see
        mp.setenv("ANTHROPIC_API_KEY", SECRET)
        mp.setenv("SOME_SERVICE_TOKEN", SECRET)
        await h.start(stdio("basic", env={"GREETING": "hello"}),
                      stdio("only", enabled_tools=["echo", "add", "fail"], disabled_tools=["fail"]),
                      stdio("live"))  # its tools change in test_tools_list_changed_adds_and_withdraws_tools
    yield h
    for manager in h.managers:
        await manager.aclose()


async def test_tools_are_discovered_under_prefixed_names(shared: Harness) -> None:
    names = [n for n in shared.registry.names() if n.startswith("mcp__basic__")]
    assert {"mcp__basic__echo", "mcp__basic__add", "mcp__basic__picture", "mcp__basic__hang"} <= set(names)
    status = shared.managers[0].states()[0]
    assert (status.name, status.transport, status.state, status.error) == ("basic", "stdio", "up", None)
    assert ("mcp__basic__echo", "echo") in status.tools and len(status.tools) == len(names)


async def test_schemas_and_read_only_hints_are_registered(shared: Harness) -> None:
    specs = {spec.name: spec for spec in shared.registry.specs()}
    add = specs["mcp__basic__add"]
    assert add.description == "Add two integers."
    assert add.parameters["type"] == "object" and add.parameters["required"] == ["a", "b"]
    assert add.parameters["properties"]["a"]["type"] == "integer"
    assert specs["mcp__basic__picture"].parameters["properties"] == {}
    assert shared.registry.is_read_only("mcp__basic__echo") and not shared.registry.is_read_only("mcp__basic__add")


async def test_awkward_names_are_sanitised_shortened_and_kept_apart(shared: Harness) -> None:
    tools = dict((original, name) for name, original in shared.managers[0].states()[0].tools)
    assert tools["notes_search"] == "mcp__basic__notes_search"  # needed no change, so it keeps its name
    assert tools["notes.search"].startswith("mcp__basic__notes_search_") and len(tools["notes.search"]) <= 64
    assert len(tools["t" * 100]) == 64
    result = await shared.run(tools["notes.search"], query="q")
    assert result["content"] == "dotted q" and not result["is_error"]


async def test_a_call_round_trips_text_and_structured_content(shared: Harness) -> None:
    assert (await shared.run("mcp__basic__add", a=2, b=3))["content"] == "5"
    result = await shared.run("mcp__basic__summary")
    assert result["content"] == '3 items\nStructured result: {"items":[1,2,3]}'
    assert not result["is_error"]


async def test_an_image_is_saved_under_the_inbox_and_returned_by_path(shared: Harness) -> None:
    result = await shared.run("mcp__basic__picture")
    text, image = result["content"]
    assert text == {"type": "text", "text": "a red pixel"}
    path = Path(image["path"])
    assert image["type"] == "image" and image["media_type"] == "image/png"
    assert path.parent == shared.workspace / "inbox" / "mcp"
    assert path.read_bytes().startswith(b"\x89PNG")  # noqa: ASYNC240


async def test_an_error_result_becomes_an_error_for_the_model(shared: Harness) -> None:
    result = await shared.run("mcp__basic__fail", reason="no way")
    assert result["is_error"] and "refused: no way" in result["content"]
    with pytest.raises(ToolError, match="refused: again"):
        await shared.managers[0].call("basic", "fail", {"reason": "again"})


async def test_bad_arguments_are_caught_before_the_server(shared: Harness) -> None:
    result = await shared.run("mcp__basic__add", a="two", b=3)
    assert result["is_error"] and "'a'" in result["content"] and "integer" in result["content"]


async def test_the_environment_is_exactly_the_entry_plus_path_home_and_locale(shared: Harness) -> None:
    keys = set(json.loads((await shared.run("mcp__basic__env_keys"))["content"].split("Structured result: ")[1])
               ["result"])
    assert "ANTHROPIC_API_KEY" not in keys and "SOME_SERVICE_TOKEN" not in keys
    assert {"GREETING", "PATH", "HOME"} <= keys
    allowed = {"GREETING", "PATH", "HOME", "LANG", "LANGUAGE", "TZ"}
    assert all(k in allowed or k.startswith("LC_") for k in keys), keys  # not even the SDK's SHELL, USER, TERM
    assert (await shared.run("mcp__basic__env_value", name="GREETING"))["content"] == "hello"
    assert (await shared.run("mcp__basic__env_value", name="PATH"))["content"] == os.environ["PATH"]


async def test_stderr_goes_to_a_private_log(shared: Harness) -> None:
    log = shared.workspace / "logs" / "mcp-basic.log"
    assert log.exists() and oct(log.stat().st_mode & 0o777) == "0o600"
    assert "basic: serving on stdio" in log.read_text()  # the server's own line, not reverie's header


async def test_manager_call_accepts_original_and_registered_names(shared: Harness) -> None:
    manager = shared.managers[0]
    assert await manager.call("basic", "echo", {"text": "hi"}) == "hi"
    assert await manager.call("basic", "mcp__basic__echo", {"text": "ho"}) == "ho"
    with pytest.raises(ToolError, match="enabled servers are: basic"):
        await manager.call("nope", "echo", {})


async def test_enabled_and_disabled_tools_filter_by_original_name(shared: Harness) -> None:
    only = [n for n in shared.registry.names() if n.startswith("mcp__only__")]
    assert only == ["mcp__only__add", "mcp__only__echo"]  # "fail" is enabled but also disabled


async def test_tools_list_changed_adds_and_withdraws_tools(shared: Harness) -> None:
    registry = shared.registry
    assert "mcp__live__add" in registry.names() and "mcp__live__extra" not in registry.names()
    assert (await shared.run("mcp__live__grow"))["content"] == "grown"
    await until(lambda: "mcp__live__extra" in registry.names())
    await until(lambda: "mcp__live__add" not in registry.names())
    assert (await shared.run("mcp__live__extra"))["content"] == "extra!"
    assert ("mcp__live__extra", "extra") in shared.managers[0].states()[2].tools


async def test_disabled_servers_are_not_started(tmp_path: Path) -> None:
    manager = MCPManager([stdio("off", enabled=False)], tmp_path / "ws")
    assert manager.states() == []
    await manager.aclose()

