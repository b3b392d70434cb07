"""`reverie start` with an MCP server that ignores stdin EOF and has a grandchild: none outlive the daemon."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.llm import FakeLLM, Turn
from tests.fakes.process import clean_env, reverie_command
from tests.fakes.telegram import FakeTelegram
from tests.mcp.helpers import SERVERS, alive, until
from tests.test_daemon import OWNER, daemon, replies, write_config

__all__ = ["daemon"]  # the fixture, imported for these tests


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
async def test_no_mcp_process_outlives_the_daemon(tmp_path: Path, fake_llm: FakeLLM, daemon: Any,
                                                  sig: signal.Signals) -> None:
    pid_file = tmp_path / "pids"
    server = {"name": "stubborn", "command": sys.executable, "args": [str(SERVERS / "stubborn.py")],
              "env": {"PID_FILE": str(pid_file)}}
    fake_llm.script(Turn(tool_calls=[("mcp__stubborn__ping", {})]), Turn(text="It said pong."))
    async with FakeTelegram() as tg:
        d = daemon(write_config(tmp_path, fake_llm, tg, mcp_servers=[server]))
        await d.start()
        tg.push_text(OWNER, "ping the server")
        await until(lambda: bool(replies(tg)), timeout=60)
        assert replies(tg) == ["It said pong."]
        assert "mcp__stubborn__ping" in str(fake_llm.requests[0].body["tools"])
        server_pid, grandchild = (int(p) for p in pid_file.read_text().split())
        assert alive(server_pid) and alive(grandchild)
        status = await asyncio.create_subprocess_exec(*reverie_command(), "status", "--config", str(d.config),
                                                      env=clean_env(tmp_path), stdout=asyncio.subprocess.PIPE)
        assert "MCP stubborn: up, 1 tools" in (await status.communicate())[0].decode()
        code = await d.stop(sig)
        assert code == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
    await until(lambda: not alive(server_pid) and not alive(grandchild), timeout=15)
