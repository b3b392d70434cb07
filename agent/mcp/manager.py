"""Every configured MCP server, and its tools in the agent's tool registry.

    manager = MCPManager(config.mcp_servers, workspace)   # cheap: no I/O, no SDK import
    await manager.start(registry)    # enabled servers start in parallel; each bounded by its timeout
    manager.states()                 # [ServerStatus(name="time", transport="stdio", state="up", ...)]
    await manager.call("time", "get_current_time", {"timezone": "UTC"})   # what `reverie mcp call` uses
    await manager.aclose()           # every server stopped, no process left behind

Tools are registered as ``mcp__<server>__<tool>`` (see ``naming``), once a server is up, in the
order of the configuration. A server that goes down keeps its tools registered, so the prompt
prefix does not change; calling one returns an error saying why and when it will be retried.
``notifications/tools/list_changed`` adds and withdraws tools while the daemon runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.config import MCPServer
from agent.errors import ToolError
from agent.mcp.connection import BACKOFF, Connection, State
from agent.mcp.content import output_text, to_output
from agent.mcp.naming import tool_name
from agent.types import ToolOutput, ToolSpec

if TYPE_CHECKING:
    from mcp_types import Tool

    from agent.tools.registry import Handler, ToolContext, ToolRegistry

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerStatus:
    name: str
    transport: str
    state: State
    error: str | None
    tools: list[tuple[str, str]] = field(default_factory=list)  # (registered name, the server's name)


@dataclass(frozen=True)
class _Registered:
    name: str
    spec: ToolSpec
    read_only: bool


class MCPManager:
    """The MCP client: one ``Connection`` per enabled server, their tools kept in one registry."""

    def __init__(self, servers: list[MCPServer], workspace: Path, *,
                 backoff: tuple[float, ...] = BACKOFF) -> None:
        self.workspace = Path(workspace).expanduser().resolve()
        self._conns = {s.name: Connection(s, self.workspace, self._tools_changed, backoff)
                       for s in servers if s.enabled}
        self._registry: ToolRegistry | None = None
        self._registered: dict[str, dict[str, _Registered]] = {name: {} for name in self._conns}
        self._names: dict[tuple[str, str], str] = {}  # a tool keeps its name across restarts
        self._live = False  # register tool changes as they happen (after start's ordered pass)
        self._closed = False

    async def start(self, registry: ToolRegistry) -> None:
        """Start every enabled server in parallel and register the tools of those that came up.

        Never raises for a server: a failed one is logged, marked down and retried in the background.
        """
        if self._registry is not None:
            return
        self._registry = registry
        # The SDK takes most of a second to import; a thread keeps the event loop answering meanwhile.
        # If it is missing, each server says so when it tries to start.
        with contextlib.suppress(ImportError):
            await asyncio.to_thread(importlib.import_module, "mcp")
        await asyncio.gather(*(conn.start() for conn in self._conns.values()))
        if self._closed:  # closed while the servers were starting: register nothing
            return
        self._live = True
        for conn in self._conns.values():  # configuration order, so names are the same on every start
            self._tools_changed(conn)

    async def aclose(self) -> None:
        """Stop every server and its processes. Idempotent."""
        self._live, self._closed = False, True
        await asyncio.gather(*(conn.aclose() for conn in self._conns.values()))

    def states(self) -> list[ServerStatus]:
        return [ServerStatus(conn.name, conn.entry.transport, conn.state, conn.error,
                             [(r.name, original) for original, r in sorted(self._registered[conn.name].items())])
                for conn in self._conns.values()]

    async def call(self, server: str, tool: str, arguments: dict[str, Any]) -> ToolOutput:
        """Call one tool by the server's name for it (or its registered name); ToolError on failure."""
        conn = self._conns.get(server)
        if conn is None:
            raise ToolError(f"No enabled MCP server is named {server!r}; the enabled servers are: "
                            f"{', '.join(self._conns) or 'none'}.")
        by_registered = {r.name: original for original, r in self._registered[server].items()}
        return await self._invoke(conn, by_registered.get(tool, tool), arguments)

    async def _invoke(self, conn: Connection, tool: str, arguments: dict[str, Any]) -> ToolOutput:
        result = await conn.call(tool, arguments)
        output = to_output(result, self.workspace / "inbox" / "mcp")
        if result.is_error:
            raise ToolError(output_text(output) or f"The tool {tool} of MCP server {conn.name} failed.")
        return output

    # --- the registry ------------------------------------------------------------------------------

    def _tools_changed(self, conn: Connection) -> None:
        if not self._live:
            return
        try:
            self._sync(conn)
        except Exception:  # a server's odd tool list must not end its session
            logger.exception("Could not register the tools of MCP server %s", conn.name)

    def _sync(self, conn: Connection) -> None:
        """Make the registry hold exactly this server's allowed tools as it last listed them."""
        registry = self._registry
        if registry is None:
            return
        current = self._registered[conn.name]
        offered = {tool.name: tool for tool in conn.tools if _allowed(conn.entry, tool.name)}
        for original in [o for o in current if o not in offered]:
            registry.remove(current.pop(original).name)
            logger.info("MCP server %s withdrew its tool %s", conn.name, original)
        # Names that need no change first: "a_b" keeps its name when "a.b" also exists.
        for original in sorted(offered, key=lambda o: (tool_name(conn.name, o) != f"mcp__{conn.name}__{o}", o)):
            entry = self._entry(conn, offered[original], registry)
            if entry is None or current.get(original) == entry:
                continue
            if original in current:
                registry.remove(current[original].name)
            registry.add(entry.spec, self._handler(conn, original), read_only=entry.read_only)
            current[original] = entry

    def _entry(self, conn: Connection, tool: Tool, registry: ToolRegistry) -> _Registered | None:
        schema = dict(tool.input_schema)
        schema.setdefault("type", "object")
        if schema["type"] != "object":
            logger.warning("MCP server %s: tool %s takes %s, not an object; it is not offered to the model",
                           conn.name, tool.name, schema["type"])
            return None
        schema.setdefault("properties", {})
        key = (conn.name, tool.name)
        if key not in self._names:
            taken = set(registry.names()) | set(self._names.values())
            self._names[key] = tool_name(conn.name, tool.name, taken)
        description = tool.description or tool.title or f"The {tool.name} tool of the MCP server {conn.name}."
        read_only = tool.annotations is not None and tool.annotations.read_only_hint is True
        return _Registered(self._names[key], ToolSpec(self._names[key], description, schema), read_only)

    def _handler(self, conn: Connection, tool: str) -> Handler:
        async def handler(ctx: ToolContext, arguments: dict[str, Any]) -> ToolOutput:
            return await self._invoke(conn, tool, arguments)

        return handler


def _allowed(entry: MCPServer, tool: str) -> bool:
    if entry.enabled_tools is not None and tool not in entry.enabled_tools:
        return False
    return tool not in entry.disabled_tools
