"""Subagents through the whole runtime: spawn → child turn on the bus → report → the parent answers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from agent.subagents import CHANNEL
from tests.fakes.llm import Delay, FakeLLM, Recorded, Turn
from tests.fakes.runtime import Chat, runtime_for


def is_child(rec: Recorded) -> bool:
    return "subagent of reverie" in json.dumps(rec.body.get("system", ""))


def tool_names(rec: Recorded) -> list[str]:
    return [t["name"] for t in rec.body.get("tools", [])]


def last_user_text(rec: Recorded) -> str:
    return json.dumps(rec.body["messages"][-1])


def scripted(child: list[Any], parent: list[Any]) -> Any:
    """A responder that answers children and the parent from their own scripts."""

    def respond(rec: Recorded) -> Any:
        script = child if is_child(rec) else parent
        return script.pop(0) if script else Turn(text="(unscripted)")

    return respond


async def test_round_trip(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.responder = scripted(
        child=[Turn(tool_calls=[("write_file", {"path": "out/found.txt", "content": "42"})]),
               Turn(text="The answer is 42; I saved it in out/found.txt.")],
        parent=[Turn(text="On it.", tool_calls=[("spawn", {"task": "Find the answer and save it.",
                                                           "tools": ["write_file"], "max_steps": 4})]),
                Turn(text="I started a helper."),
                Turn(text="Done: the answer is 42.")])
    runtime = runtime_for(tmp_path, fake_llm)
    async with runtime.running():
        chat = Chat(runtime)
        first = await chat.ask("research this")
        second = await chat.final()
    assert first.text == "I started a helper."
    assert second.text == "Done: the answer is 42."
    assert (runtime.workspace / "out" / "found.txt").read_text() == "42"
    children = [r for r in fake_llm.requests if is_child(r)]
    assert len(children) == 2
    assert tool_names(children[0]) == ["write_file"]  # only the tools it was given; never spawn
    assert "Find the answer and save it." in json.dumps(children[0].body["messages"])
    assert "research this" not in json.dumps(children[0].body["messages"])  # a fresh context
    assert "spawn" in tool_names(fake_llm.requests[0])
    report = [r for r in fake_llm.requests if not is_child(r)][-1]
    assert "The answer is 42; I saved it" in last_user_text(report) and "Report from subagent" in last_user_text(report)
    progress = chat.kinds("progress")
    assert any("step 1: write_file" in line for line in progress) and progress[-1].endswith(": done")
    child_id = progress[0].split()[1]
    session = runtime.workspace / "sessions" / f"{CHANNEL}%3A{child_id}.jsonl"
    assert session.exists()  # the child's work is kept as its own session
    assert not runtime.subagents.running


async def test_cap_on_concurrent_children(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.responder = scripted(
        child=[Delay(0.3, Turn(text="first report"))],
        parent=[Turn(tool_calls=[("spawn", {"task": "one"}), ("spawn", {"task": "two"})]),
                Turn(text="Started one."), Turn(text="Got the report.")])
    runtime = runtime_for(tmp_path, fake_llm, agent={"max_subagents": 1})
    async with runtime.running():
        chat = Chat(runtime)
        assert (await chat.ask("go")).text == "Started one."
        assert (await chat.final()).text == "Got the report."
    results = [b for b in fake_llm.requests[1].body["messages"][-1]["content"] if b["type"] == "tool_result"]
    assert [bool(r.get("is_error")) for r in results] == [False, True]
    assert "agent.max_subagents" in json.dumps(results[1])
    assert sum(1 for r in fake_llm.requests if is_child(r)) == 1


async def test_children_cannot_spawn(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.responder = scripted(
        child=[Turn(tool_calls=[("spawn", {"task": "grandchild"})]), Turn(text="I could not delegate.")],
        parent=[Turn(tool_calls=[("spawn", {"task": "delegate further"})]), Turn(text="Started."),
                Turn(text="Reported.")])
    runtime = runtime_for(tmp_path, fake_llm)
    async with runtime.running():
        chat = Chat(runtime)
        await chat.ask("go")
        await chat.final()
    children = [r for r in fake_llm.requests if is_child(r)]
    assert len(children) == 2 and "spawn" not in tool_names(children[0])
    result = children[1].body["messages"][-1]["content"][0]
    assert result["type"] == "tool_result" and result["is_error"] and "Unknown tool 'spawn'" in result["content"]
    assert sum(1 for r in fake_llm.requests if "grandchild" in json.dumps(r.body["messages"][:1])) == 0


async def test_spawn_rejects_bad_requests(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(Turn(tool_calls=[("spawn", {"task": "x", "tools": ["no_such_tool"]}),
                                     ("spawn", {"task": "x", "tools": ["spawn"]}),
                                     ("spawn", {"task": "   "})]),
                    Turn(text="Could not start any."))
    runtime = runtime_for(tmp_path, fake_llm)
    async with runtime.running():
        reply = await Chat(runtime).ask("go")
    assert reply.text == "Could not start any."
    results = fake_llm.requests[1].body["messages"][-1]["content"]
    assert all(r["is_error"] for r in results)
    assert "Unknown tool 'no_such_tool'" in results[0]["content"] and "read_file" in results[0]["content"]
    assert "spawn" in results[1]["content"] and "empty" in results[2]["content"]
    assert not runtime.subagents.running


async def test_child_step_limit(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.responder = scripted(
        child=[Turn(tool_calls=[("list_dir", {})]) for _ in range(5)],
        parent=[Turn(tool_calls=[("spawn", {"task": "loop", "max_steps": 2})]), Turn(text="Started."),
                Turn(text="It ran out of steps.")])
    runtime = runtime_for(tmp_path, fake_llm, agent={"subagent_max_steps": 3})
    async with runtime.running():
        chat = Chat(runtime)
        await chat.ask("go")
        assert (await chat.final()).text == "It ran out of steps."
    assert sum(1 for r in fake_llm.requests if is_child(r)) == 2
    assert "stopped after 2 steps" in last_user_text(fake_llm.requests[-1])


async def test_a_restart_resumes_a_working_child(tmp_path: Path, fake_llm: FakeLLM) -> None:
    """With a state file (as in `reverie start`), a child cut off by a stop goes on at the next start."""
    fake_llm.responder = scripted(child=[Delay(30)], parent=[Turn(tool_calls=[("spawn", {"task": "slow work"})]),
                                                             Turn(text="Started.")])
    state = tmp_path / "subagents.json"
    first = runtime_for(tmp_path, fake_llm)
    first.subagents.state = state
    async with first.running(drain_timeout=0.2):
        chat = Chat(first)
        await chat.ask("go")
        while not any(is_child(r) for r in fake_llm.requests):
            await asyncio.sleep(0.02)
    assert len(json.loads(state.read_text())) == 1
    fake_llm.responder = scripted(child=[Turn(text="slow work finished")], parent=[Turn(text="All done.")])
    second = runtime_for(tmp_path, fake_llm)
    second.subagents.state = state
    async with second.running():
        assert second.subagents.resume(second.service.dispatch) == 1
        reply = await Chat(second).final()
    assert reply.text == "All done."
    assert "slow work finished" in last_user_text(fake_llm.requests[-1])
    assert json.loads(state.read_text()) == {}


async def test_a_task_that_looks_like_a_command_is_just_a_task(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.responder = scripted(child=[Turn(text="did the /new task")],
                                  parent=[Turn(tool_calls=[("spawn", {"task": "/new"})]), Turn(text="Started."),
                                          Turn(text="Reported.")])
    runtime = runtime_for(tmp_path, fake_llm)
    async with runtime.running():
        chat = Chat(runtime)
        await chat.ask("go")
        assert (await chat.final()).text == "Reported."
    assert "did the /new task" in last_user_text(fake_llm.requests[-1])


async def test_an_unrecordable_child_is_not_started(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(Turn(tool_calls=[("spawn", {"task": "work"})]), Turn(text="Could not start it."))
    runtime = runtime_for(tmp_path, fake_llm)
    runtime.subagents.state = tmp_path / "missing-folder" / "subagents.json"  # every write fails
    async with runtime.running():
        reply = await Chat(runtime).ask("go")
    assert reply.text == "Could not start it."
    result = fake_llm.requests[1].body["messages"][-1]["content"][0]
    assert result["is_error"] and "it was not started" in result["content"]
    assert not runtime.subagents.running and not any(is_child(r) for r in fake_llm.requests)


async def test_children_do_not_hold_up_other_chats(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.responder = scripted(child=[Delay(30)], parent=[Turn(tool_calls=[("spawn", {"task": "slow"})]),
                                                             Turn(text="Started."), Turn(text="Hello, c2.")])
    runtime = runtime_for(tmp_path, fake_llm, agent={"max_concurrent_turns": 1})
    async with runtime.running(drain_timeout=0.1):
        chat = Chat(runtime)
        await chat.ask("go", chat="c1")
        while not any(is_child(r) for r in fake_llm.requests):
            await asyncio.sleep(0.02)
        assert (await chat.ask("hi", chat="c2")).text == "Hello, c2."


def test_channel_names_reverie_uses_are_refused(tmp_path: Path) -> None:
    import pytest

    from agent.config_file import validate
    from agent.errors import ConfigError

    tg = {"type": "telegram", "token": "123:abc"}
    with pytest.raises(ConfigError, match="may not be named 'subagent'"):
        validate({"channels": [{**tg, "name": "subagent"}]}, None)
    with pytest.raises(ConfigError, match="two channels are named 'telegram'"):
        validate({"channels": [tg, tg]}, None)


async def test_stop_and_new_stop_the_children_without_a_report(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.responder = scripted(child=[Delay(30), Delay(30)],
                                  parent=[Turn(tool_calls=[("spawn", {"task": "slow one"})]), Turn(text="Started."),
                                          Turn(tool_calls=[("spawn", {"task": "slow two"})]), Turn(text="Again.")])
    runtime = runtime_for(tmp_path, fake_llm)
    async with runtime.running():
        chat = Chat(runtime)
        await chat.ask("go")
        while not any(is_child(r) for r in fake_llm.requests):
            await asyncio.sleep(0.02)
        assert (await chat.ask("/stop")).text == "Stopped 1 subagent(s)."
        while runtime.subagents.running:
            await asyncio.sleep(0.02)
        await chat.ask("again")
        while sum(1 for r in fake_llm.requests if is_child(r)) < 2:
            await asyncio.sleep(0.02)
        assert "1 subagent(s) still working for it were stopped" in (await chat.ask("/new")).text
        while runtime.subagents.running:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
    assert len(fake_llm.requests) == 6  # no report turn after either stop
    queue = runtime.bus.outbound("test")
    while not queue.empty():
        chat.out.append(queue.get_nowait())
    assert sum(1 for line in chat.kinds("progress") if line.endswith(": stopped")) == 2


async def test_the_same_task_is_not_started_twice(tmp_path: Path, fake_llm: FakeLLM) -> None:
    """After a restart cut a step short, the model may ask again for a child that is already working."""
    fake_llm.responder = scripted(child=[Delay(30)], parent=[
        Turn(tool_calls=[("spawn", {"task": "index the notes"})]), Turn(text="Started."),
        Turn(tool_calls=[("spawn", {"task": "index the notes"})]), Turn(text="Still on it.")])
    runtime = runtime_for(tmp_path, fake_llm)
    async with runtime.running(drain_timeout=0.1):
        chat = Chat(runtime)
        await chat.ask("go")
        assert (await chat.ask("again")).text == "Still on it."
        assert len(runtime.subagents.running) == 1
    second = json.dumps(fake_llm.requests[-1].body["messages"][-1])
    assert "already working on exactly this task" in second
