"""``reverie mcp list`` and ``reverie mcp call`` as subprocesses, against real MCP servers."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import yaml

from tests.fakes.process import clean_env, reverie_command
from tests.mcp.helpers import BASIC


def write_config(tmp_path: Path) -> Path:
    servers = [
        {"name": "basic", "command": sys.executable, "args": [str(BASIC)], "enabled_tools": ["add", "fail", "picture"]},
        {"name": "broken", "command": sys.executable, "args": [str(BASIC), "--exit-at-start"]},
        {"name": "later", "transport": "http", "url": "http://127.0.0.1:9/mcp", "enabled": False},
        {"name": "missing", "command": "/nonexistent/mcp-server"},
    ]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "workspace": str(tmp_path / "ws"),
        "llm": {"provider": "anthropic", "model": "claude-test", "api_key": "sk-ant-cli-test-000111"},
        "mcp_servers": servers}))
    return path


async def reverie(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *reverie_command(), "mcp", *args, "--config", str(tmp_path / "config.yaml"), env=clean_env(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_list_and_call(tmp_path: Path) -> None:
    write_config(tmp_path)
    (code, out, _), (fail_code, fail_out, _), (pic_code, pic_out, _) = await asyncio.gather(
        reverie(tmp_path, "list"),
        reverie(tmp_path, "call", "missing", "anything", '{"reason": "not today"}'),
        reverie(tmp_path, "call", "basic", "mcp__basic__picture"))
    lines = out.splitlines()
    assert code == 0, out
    assert lines[0] == "basic  stdio  up"
    assert "  mcp__basic__add  (add)  Add two integers." in lines
    assert not [line for line in lines if "mcp__basic__echo" in line]  # not in enabled_tools
    assert any(line.startswith("broken  stdio  down: ") and "refusing to start" in line for line in lines)
    assert "later  http  disabled" in lines
    assert fail_code == 1 and "missing did not start: the command '/nonexistent/mcp-server' was not found" in fail_out
    assert pic_code == 0 and pic_out.splitlines()[0] == "a red pixel"
    saved = Path(pic_out.splitlines()[1].removeprefix("[image saved to ").removesuffix("]"))
    assert saved.parent == tmp_path / "ws" / "inbox" / "mcp"
    assert saved.read_bytes().startswith(b"\x89PNG")  # noqa: ASYNC240


async def test_call_usage_errors_say_what_to_fix(tmp_path: Path) -> None:
    write_config(tmp_path)
    (unknown, _, unknown_err), (bad, _, bad_err), (off, _, off_err), (usage, _, usage_err) = await asyncio.gather(
        reverie(tmp_path, "call", "nosuch", "add"),
        reverie(tmp_path, "call", "basic", "add", "{a: 1}"),
        reverie(tmp_path, "call", "later", "anything"),
        reverie(tmp_path, "call", "basic"))
    assert unknown == 2 and "No MCP server is named 'nosuch'" in unknown_err and "basic, broken, later, missing" in unknown_err
    assert bad == 2 and "not valid JSON" in bad_err and "single quotes" in bad_err
    assert off == 2 and "'later' is disabled" in off_err
    assert usage == 2 and "Usage: reverie mcp call SERVER TOOL" in usage_err
