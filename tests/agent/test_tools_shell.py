"""The exec tool: a filtered environment, a timeout that kills the whole group, and a deny list."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from agent.config import ExecConfig, ToolsConfig
from agent.errors import ConfigError
from agent.tools import ToolContext, builtin_registry
from agent.tools.shell import denied
from agent.types import Block, ToolCall


def make_ctx(workspace: Path, **exec_options: Any) -> ToolContext:
    config = ToolsConfig(exec=ExecConfig(enabled=True, **exec_options))
    return ToolContext(workspace=workspace, config=config)


async def run(ctx: ToolContext, **arguments: Any) -> Block:
    return await builtin_registry(ctx.config).run(ToolCall("t1", "exec", arguments), ctx)


async def test_runs_in_workspace_with_exit_code(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    result = await run(ctx, command="pwd; echo oops >&2; exit 3")
    assert result["is_error"] is False
    assert result["content"] == f"{ctx.workspace}\noops\n[exit code 3]"
    quiet = await run(ctx, command="true")
    assert quiet["content"] == "(no output)\n[exit code 0]"


async def test_env_is_an_allowlist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-parent-secret")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:parent-secret")
    monkeypatch.setenv("MY_TOOL_HOME", "/opt/tool")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    ctx = make_ctx(tmp_path, env_allow=["MY_TOOL_HOME"])
    output = (await run(ctx, command="env"))["content"]
    assert "parent-secret" not in output
    assert "ANTHROPIC_API_KEY" not in output and "TELEGRAM_BOT_TOKEN" not in output
    assert "MY_TOOL_HOME=/opt/tool" in output and "LC_ALL=C.UTF-8" in output
    assert "PATH=" in output


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a killed child nobody reaped yet is a zombie: dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


async def test_timeout_kills_the_process_group(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    started = time.monotonic()
    result = await run(ctx, command="sleep 30 & echo $! > child.pid; echo started; wait", timeout=0.3)
    assert time.monotonic() - started < 10  # the command would run for 30 s
    assert result["is_error"] is True
    assert "timed out" in result["content"] and "killed" in result["content"]
    assert "started" in result["content"]
    child = int((tmp_path / "child.pid").read_text())
    for _ in range(40):
        if not _alive(child):
            break
        await asyncio.sleep(0.05)
    assert not _alive(child), "the backgrounded sleep survived the timeout"


async def test_config_timeout_caps_the_argument(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, timeout=0.2)
    started = time.monotonic()
    result = await run(ctx, command="sleep 30", timeout=100)
    assert result["is_error"] is True and "limit 0.2 s" in result["content"]
    assert time.monotonic() - started < 10  # the command would run for 30 s


async def test_background_children_do_not_hold_the_turn(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    started = time.monotonic()
    result = await run(ctx, command="sleep 30 & echo done")
    assert result["content"] == "done\n[exit code 0]"
    assert time.monotonic() - started < 10  # the command would run for 30 s


async def test_output_is_capped(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, max_output_chars=200)
    result = await run(ctx, command="echo START; seq 1 100000; echo END")
    content = result["content"]
    assert content.startswith("START") and content.endswith("END\n[exit code 0]")
    assert "bytes of output cut" in content and len(content) < 400


@pytest.mark.parametrize("command", [
    "rm -rf /", "rm -rf ~", "sudo rm -rf / --no-preserve-root", "rm -fr /*", "rm -r -f ~/",
    "cd /tmp && rm --recursive --force $HOME", "mkfs.ext4 /dev/sda1", "dd if=/dev/zero of=/dev/sda bs=1M",
    "shutdown -h now", "sudo reboot", "echo hi; halt", "systemctl poweroff", ":(){ :|:& };:",
    "chmod -R 777 /", "echo x > /dev/sda",
])
async def test_deny_list_refuses(tmp_path: Path, command: str) -> None:
    result = await run(make_ctx(tmp_path), command=command)
    assert result["is_error"] is True
    assert result["content"].startswith("Refused: the command matches the deny rule")


@pytest.mark.parametrize("command", [
    "rm -rf ./build", "rm -rf /tmp/reverie-test-dir", "rm -rf ~/project/tmp", "grep -r shutdown docs/",
    "echo reboot-notes.txt", "chmod -R 755 ./site", "dd if=in.img of=out.img", "cat /dev/null > log.txt",
])
def test_deny_list_allows_ordinary_commands(command: str) -> None:
    assert denied(command, []) is None


async def test_configured_deny_patterns(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, deny_patterns=[r"\bgit\s+push\b"])
    result = await run(ctx, command="git push --force origin main")
    assert result["is_error"] is True and r"\bgit\s+push\b" in result["content"]
    with pytest.raises(ConfigError, match=r"deny_patterns\[0\]"):
        builtin_registry(ToolsConfig(exec=ExecConfig(enabled=True, deny_patterns=["("])))


async def test_exec_not_registered_by_default(tmp_path: Path) -> None:
    ctx = ToolContext(workspace=tmp_path, config=ToolsConfig())
    result = await builtin_registry(ctx.config).run(ToolCall("t1", "exec", {"command": "id"}), ctx)
    assert result["is_error"] is True and result["content"].startswith("Unknown tool 'exec'")


async def test_cancelled_turn_kills_the_command(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    task = asyncio.create_task(run(ctx, command="echo $$ > sh.pid; sleep 30"))
    for _ in range(100):
        if (tmp_path / "sh.pid").exists() and (tmp_path / "sh.pid").read_text().strip():
            break
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    shell = int((tmp_path / "sh.pid").read_text())
    for _ in range(40):
        if not _alive(shell):
            break
        await asyncio.sleep(0.05)
    assert not _alive(shell)
