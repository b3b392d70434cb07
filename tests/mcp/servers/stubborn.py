"""An MCP server (stdio) that ignores stdin EOF and leaves a grandchild running: the orphan maker.

    PID_FILE=/tmp/pids python tests/mcp/servers/stubborn.py

Writes "<server pid> <grandchild pid>" to ``PID_FILE`` first thing, before the SDK import.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

if __name__ == "__main__":
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(os.environ["PID_FILE"] + ".tmp", "w") as f:
        f.write(f"{os.getpid()} {grandchild.pid}")
    os.replace(os.environ["PID_FILE"] + ".tmp", os.environ["PID_FILE"])

from mcp.server.mcpserver import MCPServer

server = MCPServer("stubborn", log_level="WARNING")


@server.tool()
def ping() -> str:
    """Answer pong."""
    return "pong"


if __name__ == "__main__":
    server.run()
    time.sleep(600)  # stdin closed: a well-behaved server would exit here
