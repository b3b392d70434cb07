"""No MCP server process outlives reverie: not after aclose(), not after SIGKILL of reverie itself."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from tests.mcp.helpers import SERVERS, Harness, alive, stdio, until

STUBBORN = SERVERS / "stubborn.py"
RUN_MANAGER = Path(__file__).resolve().parent / "run_manager.py"


def pids(pid_file: Path) -> list[int]:
    return [int(p) for p in pid_file.read_text().split()]


async def test_aclose_stops_a_server_that_ignores_eof_and_its_grandchild(harness: Harness, tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    manager = await harness.start(stdio("stubborn", script=STUBBORN, env={"PID_FILE": str(pid_file)}))
    assert (await harness.run("mcp__stubborn__ping"))["content"] == "pong"
    server, grandchild = pids(pid_file)
    assert alive(server) and alive(grandchild)
    await manager.aclose()
    await until(lambda: not alive(server) and not alive(grandchild), timeout=15)


async def test_sigkill_of_the_client_takes_the_server_and_grandchild_along(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    client = await asyncio.create_subprocess_exec(
        sys.executable, str(RUN_MANAGER), str(tmp_path / "ws"), str(STUBBORN), f"PID_FILE={pid_file}")
    try:
        await until(pid_file.exists, timeout=60)  # written by the server, which the launcher started
        server, grandchild = pids(pid_file)
        assert alive(server) and alive(grandchild)
    finally:
        client.send_signal(signal.SIGKILL)
        await client.wait()
    await until(lambda: not alive(server) and not alive(grandchild), timeout=15)
