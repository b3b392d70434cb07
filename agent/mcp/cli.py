"""``reverie mcp list`` and ``reverie mcp call``: what the agent sees of its MCP servers.

    $ reverie mcp list
    time  stdio  up
      mcp__time__get_current_time  (get_current_time)  Get current time in a specific timezone
    notes  http  disabled
    $ reverie mcp call time get_current_time '{"timezone": "UTC"}'
    {"timezone": "UTC", "datetime": "...", "is_dst": false}

``list`` starts every enabled server (in parallel) and stops them again; ``call`` starts only the
one it needs. Exit codes: 0 done, 1 the call failed or returned an error, 2 a usage problem.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from typing import Any

from agent.chat import load_from_args
from agent.config import Config, MCPServer
from agent.errors import ConfigError, ToolError
from agent.types import ToolOutput

USAGE = "Usage: reverie mcp call SERVER TOOL ['{\"argument\": \"value\"}']"
NO_RETRY = (86_400.0,)  # a one-shot command reports a failed start; it does not retry in the background


def run_mcp(args: argparse.Namespace) -> int:
    from agent.logs import setup_logging

    config, _ = load_from_args(args)
    # Server failures are printed by `list` itself; the details go to the log file.
    setup_logging(config.workspace_path, config.secrets(), level=config.logging.level, stderr_level=logging.ERROR)
    if args.action == "list":
        return asyncio.run(_list(config))
    entry, tool, arguments = parse_call(list(args.args), config)
    return asyncio.run(_call(config, entry, tool, arguments))


def parse_call(words: list[str], config: Config) -> tuple[MCPServer, str, dict[str, Any]]:
    """The server entry, tool name and arguments of ``call SERVER TOOL [JSON]``; ConfigError if wrong."""
    if len(words) not in (2, 3):
        raise ConfigError(USAGE)
    servers = {s.name: s for s in config.mcp_servers}
    entry = servers.get(words[0])
    if entry is None:
        raise ConfigError(f"No MCP server is named {words[0]!r}. The configured servers are: "
                          f"{', '.join(servers) or 'none (add one under mcp_servers)'}.")
    if not entry.enabled:
        raise ConfigError(f"The MCP server {entry.name!r} is disabled; set enabled: true for it to call its tools.")
    try:
        arguments = json.loads(words[2]) if len(words) == 3 else {}
    except json.JSONDecodeError as exc:
        raise ConfigError(f"The arguments are not valid JSON ({exc.msg} at column {exc.colno}). Give one JSON "
                          "object in single quotes, e.g. '{\"text\": \"hi\"}'.") from None
    if not isinstance(arguments, dict):
        raise ConfigError(f"The arguments must be a JSON object such as '{{\"text\": \"hi\"}}', "
                          f"not {type(arguments).__name__}.")
    return entry, words[1], arguments


async def _list(config: Config) -> int:
    from agent.mcp import MCPManager
    from agent.tools.registry import ToolRegistry

    registry = ToolRegistry()
    manager = MCPManager(config.mcp_servers, config.workspace_path, backoff=NO_RETRY)
    try:
        await manager.start(registry)
        descriptions = {spec.name: spec.description for spec in registry.specs()}
        for status in manager.states():
            print(f"{status.name}  {status.transport}  {status.state}"
                  + (f": {status.error}" if status.state != "up" and status.error else ""))
            for registered, original in status.tools:
                summary = (descriptions.get(registered) or "").strip().split("\n")[0]
                print(f"  {registered}  ({original})  {summary}".rstrip())
    finally:
        await manager.aclose()
    for entry in config.mcp_servers:
        if not entry.enabled:
            print(f"{entry.name}  {entry.transport}  disabled")
    if not config.mcp_servers:
        print("No MCP servers are configured; add them under mcp_servers in the config file.")
    return 0


async def _call(config: Config, entry: MCPServer, tool: str, arguments: dict[str, Any]) -> int:
    from agent.mcp import MCPManager
    from agent.tools.registry import ToolRegistry

    manager = MCPManager([entry], config.workspace_path, backoff=NO_RETRY)
    try:
        await manager.start(ToolRegistry())
        status = manager.states()[0]
        if status.state != "up":
            raise ToolError(f"The MCP server {entry.name} did not start: {status.error}.")
        output = await manager.call(entry.name, tool, arguments)
    except ToolError as exc:
        print(f"error: {exc}")
        return 1
    finally:
        await manager.aclose()
    print(_printable(output))
    return 0


def _printable(output: ToolOutput) -> str:
    if isinstance(output, str):
        return output
    return "\n".join(block["text"] if block.get("type") == "text" else f"[image saved to {block.get('path')}]"
                     for block in output)
