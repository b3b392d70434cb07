"""Edge cases from review: error codes a healthy server sends, hung and restarted servers, secrets in errors."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from agent.config import Config, MCPServer
from agent.errors import ToolError
from agent.mcp import MCPManager
from tests.mcp.helpers import SERVERS, Harness, stdio, until
from tests.mcp.servers.http_app import build_app

RAW = SERVERS / "raw.py"
SECRET = "env-secret-value-42"


class Served:
    """An ASGI app on 127.0.0.1 that can be stopped and started again on the same port."""

    def __init__(self) -> None:
        self.port = 0
        self.server: uvicorn.Server | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self, app: Any) -> str:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="critical"))
        self.task = asyncio.create_task(self.server.serve())
        await until(lambda: self.server is not None and self.server.started, timeout=10)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            self.server.force_exit = True
            await self.task
            self.server = self.task = None


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    s = Served()
    yield s
    await s.stop()


@pytest.mark.parametrize("code", ["err32000", "err32001"])
async def test_a_healthy_server_sending_closed_or_timeout_codes_is_a_refusal(harness: Harness, code: str) -> None:
    manager = await harness.start(stdio("raw", script=RAW))
    result = await harness.run(f"mcp__raw__{code}")
    assert result["is_error"] and result["content"] == ("The MCP server raw refused the call: "
                                                        "upstream API quota exceeded")
    await asyncio.sleep(0.3)
    assert manager.states()[0].state == "up"
    assert (await harness.run("mcp__raw__plain"))["content"] == "plain"


async def test_a_call_right_after_a_crash_restarts_the_server(harness: Harness) -> None:
    await harness.start(stdio("fragile"))
    first = (await harness.run("mcp__fragile__pid"))["content"]
    assert "stopped in the middle" in (await harness.run("mcp__fragile__crash"))["content"]
    assert (await harness.run("mcp__fragile__echo", text="at once"))["content"] == "at once"
    assert (await harness.run("mcp__fragile__pid"))["content"] != first


async def test_a_server_that_hangs_after_start_is_restarted_on_next_use(harness: Harness) -> None:
    entry = stdio("frozen", script=RAW)
    manager = await harness.start(entry)
    entry.timeout = 1.0
    result = await harness.run("mcp__frozen__freeze")
    assert result["is_error"] and "did not answer within 1 s" in result["content"]
    await until(lambda: manager.states()[0].state == "down")
    assert "stopped answering" in str(manager.states()[0].error)
    assert (await harness.run("mcp__frozen__plain"))["content"] == "plain"


async def test_tool_list_changes_in_a_row_end_with_the_newest_list(harness: Harness) -> None:
    await harness.start(stdio("r", "--stale", script=RAW))
    assert (await harness.run("mcp__r__flip"))["content"] == "flip"
    await until(lambda: "mcp__r__c" in harness.registry.names())
    await asyncio.sleep(1.5)  # the stale answer has arrived by now
    assert "mcp__r__c" in harness.registry.names() and "mcp__r__b" not in harness.registry.names()


async def test_aclose_during_start_registers_nothing(harness: Harness) -> None:
    manager = MCPManager([stdio("ok"), stdio("stuck", "--hang-at-start")], harness.workspace)
    starting = asyncio.create_task(manager.start(harness.registry))
    await until(lambda: manager.states()[0].state == "up")
    await manager.aclose()
    await starting
    assert not [n for n in harness.registry.names() if n.startswith("mcp__")]
    assert [s.state for s in manager.states()] == ["down", "down"]


async def test_the_stderr_of_a_failed_server_is_masked(harness: Harness) -> None:
    manager = await harness.start(stdio("leaky", "--say-on-stderr", f"boom: key {SECRET} rejected", "--exit-at-start",
                                        script=RAW, env={"SERVICE_KEY": SECRET}), backoff=(60.0,))
    error = str(manager.states()[0].error)
    assert "boom: key" in error and SECRET not in error


async def test_a_relative_command_is_found_in_the_server_cwd(harness: Harness) -> None:
    tools = harness.workspace / "tools"
    tools.mkdir(parents=True)
    script = tools / "run-basic"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} {SERVERS / 'basic.py'}\n")
    script.chmod(0o755)
    manager = await harness.start(MCPServer(name="rel", command="./run-basic", cwd="tools"))
    assert manager.states()[0].state == "up", manager.states()[0].error


def test_url_credentials_are_secrets() -> None:
    config = Config.model_validate({"mcp_servers": [
        {"name": "h", "transport": "http", "url": "https://someone:pa55word-x@example.com/mcp?api_key=QUERYSECRET&v=1"}]})
    assert {"someone", "pa55word-x", "QUERYSECRET"} <= config.secrets() and "1" not in config.secrets()


async def test_http_errors_do_not_show_the_url(harness: Harness, served: Served) -> None:
    url = await served.start(build_app("tok"))
    manager = await harness.start(MCPServer(name="old", transport="sse", url=f"{url}/nope?api_key=QUERYSECRET",
                                            headers={"Authorization": "Bearer tok"}), backoff=(60.0,))
    error = str(manager.states()[0].error)
    assert "404" in error and "QUERYSECRET" not in error and "/nope" not in error


async def test_a_restarted_http_server_gets_a_new_session(harness: Harness, served: Served) -> None:
    url = await served.start(build_app("tok"))
    manager = await harness.start(MCPServer(name="web", transport="http", url=f"{url}/mcp",
                                            headers={"Authorization": "Bearer tok"}))
    assert (await harness.run("mcp__web__shout", text="a"))["content"] == "A"
    await served.stop()
    await served.start(build_app("tok"))  # it forgot our session
    result = await harness.run("mcp__web__shout", text="b")
    assert result["is_error"] and "lost our session" in result["content"] and "not run" in result["content"]
    await until(lambda: manager.states()[0].state == "down")
    assert (await harness.run("mcp__web__shout", text="c"))["content"] == "C"


async def test_aclose_does_not_wait_for_a_server_that_ignores_delete(harness: Harness, served: Served) -> None:
    inner = build_app("tok")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "DELETE":
            await asyncio.sleep(3600)
        await inner(scope, receive, send)

    url = await served.start(app)
    manager = await harness.start(MCPServer(name="web", transport="http", url=f"{url}/mcp",
                                            headers={"Authorization": "Bearer tok"}, timeout=5))
    assert (await harness.run("mcp__web__shout", text="a"))["content"] == "A"
    began = time.monotonic()
    await manager.aclose()
    assert time.monotonic() - began < 15
    with pytest.raises(ToolError, match="not running"):
        await manager.call("web", "shout", {"text": "x"})


