"""The MCP client: tools of configured MCP servers, side by side with the built-in ones.

    from agent.mcp import MCPManager
    manager = MCPManager(config.mcp_servers, workspace)
    await manager.start(registry)      # in parallel, each bounded by its timeout; never raises
    ...
    await manager.aclose()

Others may import ``MCPManager`` and ``ServerStatus`` from here, nothing else. Importing this
package does not import the ``mcp`` SDK (it takes most of a second); ``start`` does.

    manager.py      all servers; tool names, specs and handlers in the registry
    connection.py   one server: supervisor task, start-up timeout, calls, restart with backoff
    transport.py    stdio (through launcher.py), streamable HTTP and SSE; the server's environment
    launcher.py     a stdlib-only script between reverie and a stdio server: no orphans, exact env
    content.py      a CallToolResult as text and image blocks
    naming.py       mcp__<server>__<tool>, sanitised and at most 64 characters
    cli.py          `reverie mcp list` and `reverie mcp call`
"""

from agent.mcp.manager import MCPManager, ServerStatus

__all__ = ["MCPManager", "ServerStatus"]
