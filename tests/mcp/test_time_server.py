"""A third-party server, ``mcp-server-time`` (installed from PyPI), over stdio."""

from __future__ import annotations

import json
import sys

from agent.config import MCPServer
from tests.mcp.helpers import Harness


async def test_mcp_server_time_discovery_and_one_call(harness: Harness) -> None:
    manager = await harness.start(MCPServer(name="time", command=sys.executable,
                                            args=["-m", "mcp_server_time", "--local-timezone", "UTC"]))
    status = manager.states()[0]
    assert status.state == "up", status.error
    assert ("mcp__time__get_current_time", "get_current_time") in status.tools
    assert ("mcp__time__convert_time", "convert_time") in status.tools
    spec = next(s for s in harness.registry.specs() if s.name == "mcp__time__get_current_time")
    assert spec.parameters["required"] == ["timezone"] and "IANA" in spec.parameters["properties"]["timezone"]["description"]
    assert harness.registry.is_read_only("mcp__time__get_current_time")
    result = await harness.run("mcp__time__get_current_time", timezone="Europe/Paris")
    assert not result["is_error"], result
    answer = json.loads(result["content"])
    assert answer["timezone"] == "Europe/Paris" and "datetime" in answer
    bad = await harness.run("mcp__time__get_current_time", timezone="Mars/Olympus")
    assert bad["is_error"] and "Mars/Olympus" in bad["content"]
