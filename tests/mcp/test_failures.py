"""MCP servers that crash, hang, never start or are missing: errors for the model, the rest keeps working."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from agent.errors import ToolError
from tests.mcp.helpers import Harness, stdio, until


def calls(count_file: Path, name: str) -> int:
    return count_file.read_text().split().count(name) if count_file.exists() else 0


async def test_a_crash_mid_call_is_an_error_not_retried_and_the_next_call_restarts(harness: Harness,
                                                                                 tmp_path: Path) -> None:
    count = tmp_path / "calls.txt"
    # Restart at once after the first crash; after the second, wait 30 s.
    manager = await harness.start(stdio("fragile", env={"COUNT_FILE": str(count)}), backoff=(0.0, 30.0))
    first_pid = int((await harness.run("mcp__fragile__pid"))["content"])
    result = await harness.run("mcp__fragile__crash")
    assert result["is_error"]
    assert "stopped in the middle of the call" in result["content"] and "not retried" in result["content"]
    await until(lambda: manager.states()[0].state == "down")
    assert "exited" in str(manager.states()[0].error)
    await asyncio.sleep(0.2)
    assert manager.states()[0].state == "down"  # restarted on use, not behind the model's back
    assert "mcp__fragile__echo" in harness.registry.names()  # tools stay registered while it is down
    assert (await harness.run("mcp__fragile__echo", text="back"))["content"] == "back"
    assert int((await harness.run("mcp__fragile__pid"))["content"]) != first_pid
    assert calls(count, "crash") == 1

    await harness.run("mcp__fragile__crash")
    await until(lambda: manager.states()[0].state == "down")
    result = await harness.run("mcp__fragile__echo", text="x")  # within the backoff: says when instead
    assert result["is_error"] and re.search(r"fragile is down \(it exited.*again in \d+ s", result["content"])

    await manager.aclose()
    await manager.aclose()  # idempotent
    result = await harness.run("mcp__fragile__echo", text="x")
    assert result["is_error"] and "not running" in result["content"]


async def test_a_call_that_never_answers_times_out_and_is_not_retried(harness: Harness, tmp_path: Path) -> None:
    count = tmp_path / "calls.txt"
    entry = stdio("slow", env={"COUNT_FILE": str(count)})
    await harness.start(entry)
    entry.timeout = 1.0  # start-up keeps the generous default (slow machines); the call gets one second
    result = await harness.run("mcp__slow__hang")
    assert result["is_error"]
    assert result["content"] == ("The MCP server slow did not answer within 1 s; "
                                 "the call was not retried because tools can have side effects.")
    assert (await harness.run("mcp__slow__echo", text="still here"))["content"] == "still here"
    assert calls(count, "hang") == 1


async def test_servers_that_hang_exit_or_are_missing_are_down_and_the_others_work(harness: Harness) -> None:
    manager = await harness.start(
        stdio("good"),
        stdio("hangs", "--hang-at-start", timeout=1.0),
        stdio("quits", "--exit-at-start"),
        stdio("missing", command="/nonexistent/mcp-server"),
        stdio("nocommand", command="no-such-mcp-server-command"),
        backoff=(60.0,),
    )
    states = {s.name: s for s in manager.states()}
    assert states["good"].state == "up"
    assert states["hangs"].state == "down" and states["hangs"].error == "it did not finish starting within 1 s"
    assert states["quits"].state == "down" and "refusing to start (--exit-at-start)" in str(states["quits"].error)
    assert "'/nonexistent/mcp-server' was not found" in str(states["missing"].error)
    assert "'no-such-mcp-server-command' was not found" in str(states["nocommand"].error)
    assert (await harness.run("mcp__good__echo", text="fine"))["content"] == "fine"
    assert not [n for n in harness.registry.names() if n.startswith(("mcp__hangs", "mcp__quits", "mcp__missing"))]
    try:
        await manager.call("quits", "echo", {"text": "x"})
        raise AssertionError("a down server answered")
    except ToolError as exc:
        assert re.search(r"quits is down \(.*refusing to start.*\); reverie will try to start it again in \d+ s",
                         str(exc))


async def test_a_server_that_failed_at_start_is_retried_in_the_background(harness: Harness,
                                                                          tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    manager = await harness.start(stdio("late", "--exit-unless", str(ready)), backoff=(0.2,))
    assert manager.states()[0].state in ("down", "starting") and not manager.states()[0].tools
    ready.touch()
    await until(lambda: manager.states()[0].state == "up")
    await until(lambda: "mcp__late__echo" in harness.registry.names())
    assert (await harness.run("mcp__late__echo", text="made it"))["content"] == "made it"

