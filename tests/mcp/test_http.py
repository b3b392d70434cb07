"""Real MCP servers over streamable HTTP and SSE on 127.0.0.1, which check the Authorization header."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from agent.config import MCPServer
from tests.mcp.helpers import Harness
from tests.mcp.servers.http_app import build_app

Serve = Callable[[Any], Awaitable[str]]
TOKEN = "s3cret-token-value"


def entry(name: str, url: str, token: str = TOKEN, **fields: Any) -> MCPServer:
    return MCPServer(name=name, transport="http", url=f"{url}/mcp", headers={"Authorization": f"Bearer {token}"},
                     **fields)


async def test_http_server_with_a_header_discovers_and_calls(harness: Harness, http_server: Serve) -> None:
    url = await http_server(build_app(TOKEN))
    manager = await harness.start(entry("web", url))
    status = manager.states()[0]
    assert (status.transport, status.state) == ("http", "up")
    assert [t for t, _ in status.tools] == ["mcp__web__shout", "mcp__web__stats"]
    assert (await harness.run("mcp__web__shout", text="hi"))["content"] == "HI"
    stats = (await harness.run("mcp__web__stats", values=[1, 2.5]))["content"]
    assert json.loads(stats) == {"count": 2, "sum": 3.5}  # the structured copy is not repeated


async def test_an_older_sse_server_with_a_header(harness: Harness, http_server: Serve) -> None:
    url = await http_server(build_app(TOKEN, "sse"))
    server = MCPServer(name="old", transport="sse", url=f"{url}/sse", headers={"Authorization": f"Bearer {TOKEN}"})
    manager = await harness.start(server)
    assert manager.states()[0].state == "up", manager.states()[0].error
    assert (await harness.run("mcp__old__shout", text="sse"))["content"] == "SSE"


async def test_a_wrong_header_leaves_the_server_down_with_a_clear_error(harness: Harness, http_server: Serve,
                                                                        caplog: Any) -> None:
    url = await http_server(build_app(TOKEN))
    manager = await harness.start(entry("locked", url, token="wrong-token-value"), backoff=(60.0,))
    status = manager.states()[0]
    assert status.state == "down" and "401" in str(status.error)
    assert "wrong-token-value" not in caplog.text and "wrong-token-value" not in str(status.error)


async def test_an_unreachable_server_is_down(harness: Harness) -> None:
    manager = await harness.start(MCPServer(name="gone", transport="http", url="http://127.0.0.1:9/mcp"),
                                  backoff=(60.0,))
    status = manager.states()[0]
    assert status.state == "down" and status.error
