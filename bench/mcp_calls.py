"""MCP benchmark: what reverie adds to a tool call, and how long MCP servers take to start.

    python bench/mcp_calls.py            # prints a Markdown table; takes about 15 seconds

The servers are tests/mcp/servers/basic.py, started with this interpreter. "Direct" means the SDK's
own ``stdio_client`` + ``ClientSession`` on the bare server, without reverie or the launcher.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.config import MCPServer, ToolsConfig  # noqa: E402
from agent.mcp import MCPManager  # noqa: E402
from agent.mcp.transport import LAUNCHER  # noqa: E402
from agent.tools.registry import ToolContext, ToolRegistry  # noqa: E402
from agent.types import ToolCall  # noqa: E402
from bench.timing import median_ms  # noqa: E402

BASIC = ROOT / "tests" / "mcp" / "servers" / "basic.py"
Row = tuple[str, str, str]


def entry(name: str) -> MCPServer:
    return MCPServer(name=name, command=sys.executable, args=[str(BASIC)])



async def start_seconds(workspace: Path, names: list[str]) -> float:
    manager = MCPManager([entry(n) for n in names], workspace)
    start = time.perf_counter()
    await manager.start(ToolRegistry())
    elapsed = time.perf_counter() - start
    assert all(s.state == "up" for s in manager.states()), manager.states()
    await manager.aclose()
    return elapsed


async def startup(workspace: Path, runs: int = 3) -> list[Row]:
    """First start in a fresh process (SDK import included), then warm: one server, three in parallel."""
    first = await start_seconds(workspace, ["a"])
    one = statistics.median([await start_seconds(workspace, ["one"]) for _ in range(runs)])
    three = statistics.median([await start_seconds(workspace, ["x", "y", "z"]) for _ in range(runs)])
    return [("`MCPManager.start`, first in a fresh process, 1 server (includes the SDK import)", f"{first:.2f} s", ""),
            (f"`MCPManager.start`, 1 stdio server (median of {runs})", f"{one:.2f} s", ""),
            (f"`MCPManager.start`, 3 stdio servers in parallel (median of {runs})", f"{three:.2f} s", "<= 1.5 s")]


async def call_overhead(workspace: Path, n: int = 100) -> list[Row]:
    from mcp import ClientSession, StdioServerParameters, stdio_client

    registry = ToolRegistry()
    manager = MCPManager([entry("bench")], workspace)
    await manager.start(registry)
    ctx = ToolContext(workspace, ToolsConfig())
    call = ToolCall("b1", "mcp__bench__echo", {"text": "ping"})
    try:
        ours = await median_ms(lambda: registry.run(call, ctx), n, warmup=10)
    finally:
        await manager.aclose()
    params = StdioServerParameters(command=sys.executable, args=[str(BASIC)])
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        await session.list_tools()
        direct = await median_ms(lambda: session.call_tool("echo", {"text": "ping"}), n, warmup=10)
    return [(f"tool call via `registry.run` (median of {n})", f"{ours:.2f} ms", ""),
            (f"same call via the SDK's `ClientSession.call_tool` (median of {n})", f"{direct:.2f} ms", ""),
            ("reverie's overhead per call", f"{ours - direct:.2f} ms", "<= 2 ms")]


def launcher_overhead(runs: int = 20) -> list[Row]:
    """Wall time to run /bin/true directly and through the launcher."""
    def timed(command: list[str]) -> float:
        samples = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run(command, check=True, start_new_session=True)
            samples.append((time.perf_counter() - start) * 1000)
        return statistics.median(samples)

    bare = timed(["/bin/true"])
    wrapped = timed([sys.executable, "-I", str(LAUNCHER), "--parent", str(os.getpid()), "--keep", "PATH", "--", "/bin/true"])
    return [("launcher start-up cost (`/bin/true` through it minus bare)", f"{wrapped - bare:.1f} ms",
             "a few tens of ms")]


async def daemon_ready(tmp: Path, servers: int) -> float:
    """Seconds from spawning `reverie start` until it serves (every MCP server up, tools registered)."""
    import yaml

    from tests.fakes.llm import FakeLLM
    from tests.fakes.process import clean_env, reverie_command
    from tests.fakes.telegram import FakeTelegram

    async with FakeLLM() as llm, FakeTelegram() as tg:
        config = tmp / f"daemon-{servers}.yaml"
        config.write_text(yaml.safe_dump({
            "workspace": str(tmp / f"dws-{servers}"),
            "llm": {"provider": "anthropic", "model": "claude-test", "api_key": "sk-ant-bench", "base_url": llm.url},
            "channels": [{"type": "telegram", "token": tg.token, "base_url": tg.base_url}],
            "mcp_servers": [entry(f"s{i}").model_dump() for i in range(servers)]}))
        start = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(*reverie_command(), "start", "--config", str(config),
                                                    env=clean_env(tmp), stderr=asyncio.subprocess.PIPE)
        assert proc.stderr is not None
        while b"reverie is serving" not in await proc.stderr.readline():
            pass
        elapsed = time.perf_counter() - start
        proc.terminate()
        await proc.wait()
        return elapsed


async def daemon_startup(tmp: Path, runs: int = 3) -> list[Row]:
    bare = statistics.median([await daemon_ready(tmp, 0) for _ in range(runs)])
    three = statistics.median([await daemon_ready(tmp, 3) for _ in range(runs)])
    return [(f"`reverie start` until serving, no MCP servers (median of {runs})", f"{bare:.2f} s", ""),
            (f"`reverie start` until serving, 3 stdio MCP servers (median of {runs})", f"{three:.2f} s",
             "<= 1.5 s")]


async def measure(workspace: Path) -> list[Row]:
    rows = await startup(workspace)  # first: the SDK import is part of the first figure
    rows += await call_overhead(workspace)
    rows += await daemon_startup(workspace.parent)
    return rows


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rows = asyncio.run(measure(Path(tmp) / "ws"))
    rows += launcher_overhead()
    print("| measure | median | target |\n|---|---|---|")
    for name, value, target in rows:
        print(f"| {name} | {value} | {target} |")


if __name__ == "__main__":
    main()
