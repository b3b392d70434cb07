"""Helpers for the MCP client tests: real servers (scripts in ``servers/``) run with this interpreter."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agent.config import MCPServer, ToolsConfig
from agent.mcp import MCPManager
from agent.tools.registry import ToolContext, ToolRegistry
from agent.types import Block, ToolCall

SERVERS = Path(__file__).resolve().parent / "servers"
BASIC = SERVERS / "basic.py"
FAST = (0.0,)  # restart backoff for tests that are not about the backoff itself


def stdio(name: str, *args: str, script: Path = BASIC, **fields: Any) -> MCPServer:
    fields.setdefault("command", sys.executable)
    fields.setdefault("args", [str(script), *args])
    return MCPServer(name=name, **fields)


class Harness:
    """A manager, the registry it fills and a way to call tools as the agent loop does."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.registry = ToolRegistry()
        self.managers: list[MCPManager] = []

    async def start(self, *servers: MCPServer, backoff: tuple[float, ...] = FAST) -> MCPManager:
        manager = MCPManager(list(servers), self.workspace, backoff=backoff)
        self.managers.append(manager)
        await manager.start(self.registry)
        return manager

    async def run(self, tool: str, /, **arguments: Any) -> Block:
        ctx = ToolContext(self.workspace, ToolsConfig())
        return await self.registry.run(ToolCall("call-1", tool, arguments), ctx)


async def until(check: Callable[[], bool | Awaitable[bool]], timeout: float = 20.0) -> None:
    """Poll ``check`` until it is true; fail after ``timeout`` seconds (generous: CI machines are slow)."""
    async with asyncio.timeout(timeout):
        while True:
            result = check()
            if await result if isinstance(result, Awaitable) else result:
                return
            await asyncio.sleep(0.02)


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rfind(")") + 2] != "Z"
    return True
