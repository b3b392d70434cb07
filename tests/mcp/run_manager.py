"""Start an MCPManager with the given stdio server script, print READY, then wait to be killed.

    python tests/mcp/run_manager.py WORKSPACE SCRIPT [ENV=VALUE ...]

The no-orphans test SIGKILLs this process and checks that the server and its children go too.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from agent.config import MCPServer
from agent.mcp import MCPManager
from agent.tools.registry import ToolRegistry


async def main(workspace: str, script: str, pairs: list[str]) -> None:
    env = dict(pair.split("=", 1) for pair in pairs)
    manager = MCPManager([MCPServer(name="victim", command=sys.executable, args=[script], env=env)], Path(workspace))
    await manager.start(ToolRegistry())
    print("READY" if manager.states()[0].state == "up" else f"DOWN {manager.states()[0].error}", flush=True)
    await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
