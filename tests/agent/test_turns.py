"""Turns through the whole core: bus → service → loop → real SDK → stand-in LLM → tools → session."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from agent.context import SUMMARY_HEADER
from tests.fakes.llm import Delay, Fail, FakeLLM, StreamError, Turn
from tests.fakes.prefix import is_prefix_extension
from tests.fakes.runtime import Chat, runtime_for


@pytest.mark.parametrize("api", ["anthropic", "openai"])
async def test_text_turn_is_answered_and_persisted(tmp_path: Path, fake_llm: FakeLLM, api: str) -> None:
    fake_llm.script(Turn(text="Hello there, friend."))
    runtime = runtime_for(tmp_path, fake_llm, api)
    async with runtime.running():
        chat = Chat(runtime)
        reply = await chat.ask("hi")
    assert (reply.kind, reply.text) == ("reply", "Hello there, friend.")
    assert "".join(chat.kinds("delta")) == "Hello there, friend."
    lines = (runtime.workspace / "sessions" / "test%3Ac1.jsonl").read_text().splitlines()
    roles = [json.loads(line).get("role") for line in lines[1:]]
    assert roles == ["user", "assistant"]
    sent = json.dumps(fake_llm.requests[0].body)
    assert "hi" in sent and "[sent " in sent


@pytest.mark.parametrize("api", ["anthropic", "openai"])
async def test_tool_call_round_trip(tmp_path: Path, fake_llm: FakeLLM, api: str) -> None:
    fake_llm.script(Turn(text="Writing.", tool_calls=[("write_file", {"path": "notes/a.txt", "content": "42"})]),
                    Turn(text="Saved it."))
    runtime = runtime_for(tmp_path, fake_llm, api)
    async with runtime.running():
        chat = Chat(runtime)
        reply = await chat.ask("save 42")
    assert reply.text == "Saved it."
    assert (runtime.workspace / "notes" / "a.txt").read_text() == "42"
    assert chat.kinds("tool") == ["write_file(path='notes/a.txt', content='42')"]
    second = json.dumps(fake_llm.requests[1].body)
    assert ("tool_result" in second) if api == "anthropic" else ('"role": "tool"' in second)
    names = [t["name"] if api == "anthropic" else t["function"]["name"] for t in fake_llm.requests[0].body["tools"]]
    assert names == sorted(names) and "read_file" in names


@pytest.mark.parametrize("api", ["anthropic", "openai"])
async def test_every_request_extends_the_previous_one(tmp_path: Path, fake_llm: FakeLLM, api: str) -> None:
    fake_llm.script(Turn(text="one"), Turn(tool_calls=[("list_dir", {})]), Turn(text="two"), Turn(text="three"))
    runtime = runtime_for(tmp_path, fake_llm, api)
    async with runtime.running():
        chat = Chat(runtime)
        for text in ("a", "b", "c"):
            await chat.ask(text)
    bodies = [r.body for r in fake_llm.requests]
    assert len(bodies) == 4
    assert all(is_prefix_extension(p, n) for p, n in itertools.pairwise(bodies))


async def test_anthropic_cache_breakpoints(tmp_path: Path, fake_llm: FakeLLM) -> None:
    runtime = runtime_for(tmp_path, fake_llm)
    async with runtime.running():
        chat = Chat(runtime)
        await chat.ask("a")
        await chat.ask("b")
    body = fake_llm.requests[1].body
    assert body["system"][-1]["cache_control"] == {"type": "ephemeral"}
    marked = [i for i, m in enumerate(body["messages"]) if "cache_control" in m["content"][-1]]
    assert marked == [0, 2]


async def test_step_limit_is_said(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.default = Turn(tool_calls=[("list_dir", {})])
    runtime = runtime_for(tmp_path, fake_llm, agent={"max_steps": 3})
    async with runtime.running():
        reply = await Chat(runtime).ask("loop forever")
    assert "after 3 steps" in reply.text and "agent.max_steps" in reply.text
    assert len(fake_llm.requests) == 3


async def test_broken_stream_before_any_text_is_retried_once(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(StreamError(partial=""), Turn(text="second try"))
    runtime = runtime_for(tmp_path, fake_llm)
    async with runtime.running():
        chat = Chat(runtime)
        reply = await chat.ask("hi")
    assert reply.text == "second try"
    assert len(fake_llm.requests) == 2
    assert [o.kind for o in chat.out].count("reply") == 1


async def test_broken_stream_after_text_is_not_repeated(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(StreamError(partial="Half an ans"), Turn(text="never sent"))
    runtime = runtime_for(tmp_path, fake_llm)
    async with runtime.running():
        chat = Chat(runtime)
        reply = await chat.ask("hi")
        again = await chat.ask("still there?")
    assert reply.kind == "error" and "failed during the answer" in reply.text
    assert len(fake_llm.requests) == 2  # no retry of the broken one; the second turn used the next step
    assert again.text == "never sent"


async def test_fallback_model_answers_when_primary_fails(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(Fail(529), Turn(text="from the fallback"))
    runtime = runtime_for(tmp_path, fake_llm, llm={"fallback": ["claude-backup"]})
    async with runtime.running():
        chat = Chat(runtime)
        reply = await chat.ask("hi")
    assert reply.text == "from the fallback"
    assert [r.body["model"] for r in fake_llm.requests] == ["claude-test", "claude-backup"]
    assert [o.kind for o in chat.out].count("reply") == 1


async def test_daily_token_budget_blocks_the_call(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(Turn(text="first", usage=(100, 50, 0, 0)))
    runtime = runtime_for(tmp_path, fake_llm, llm={"daily_token_budget": 120})
    async with runtime.running():
        chat = Chat(runtime)
        await chat.ask("one")
        reply = await chat.ask("two")
    assert reply.kind == "error" and "budget of 120 tokens is spent" in reply.text
    assert len(fake_llm.requests) == 1
    assert json.loads((runtime.workspace / "usage.jsonl").read_text().splitlines()[0])["input"] == 100


async def test_dollar_budget_uses_known_prices(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(Turn(text="pricey", usage=(1_000_000, 0, 0, 0)))
    runtime = runtime_for(tmp_path, fake_llm, llm={"model": "claude-sonnet-4-6", "daily_budget_usd": 2.5})
    async with runtime.running():
        chat = Chat(runtime)
        await chat.ask("one")
        reply = await chat.ask("two")
    assert "budget of $2.50 is spent ($3.00 so far)" in reply.text


async def test_commands(tmp_path: Path, fake_llm: FakeLLM) -> None:
    runtime = runtime_for(tmp_path, fake_llm)
    async with runtime.running():
        chat = Chat(runtime)
        await chat.ask("remember me")
        assert "/new" in (await chat.ask("/help")).text
        assert "1 model calls" in (await chat.ask("/usage")).text
        assert "new conversation" in (await chat.ask("/new")).text
        await chat.ask("fresh")
    assert "remember me" not in json.dumps(fake_llm.requests[-1].body)
    old = [p for p in (runtime.workspace / "sessions").iterdir() if p.name.startswith("test%3Ac1.")]
    assert len(old) == 2  # the live file and the one /new set aside


async def test_sessions_run_concurrently_but_each_in_order(tmp_path: Path, fake_llm: FakeLLM) -> None:
    seen: list[str] = []

    def respond(rec: Any) -> Any:
        text = json.dumps(rec.body)
        seen.append("slow" if "slow" in text else "fast")
        return Delay(0.3, Turn(text="slow done")) if "slow" in text and "slow done" not in text else Turn(text="ok")

    fake_llm.responder = respond
    runtime = runtime_for(tmp_path, fake_llm)
    async with runtime.running():
        chat = Chat(runtime)
        await chat.send("slow please", chat="a")
        await chat.send("after slow", chat="a")
        await chat.send("quick", chat="b")
        first = await chat.final(chat="b")
        assert first.text == "ok"
        assert len([o for o in chat.out if o.chat_id == "a" and o.kind == "reply"]) == 0  # b overtook a
        await chat.final(chat="a")
        await chat.final(chat="a")
    a_requests = [r.body for r in fake_llm.requests if "slow please" in json.dumps(r.body)]
    assert "slow done" in json.dumps(a_requests[-1])  # the second message of a saw the first answer


async def test_stop_cancels_the_turn_and_the_session_still_works(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(Turn(tool_calls=[("list_dir", {})]), Delay(5, Turn(text="too late")), Turn(text="back"))
    runtime = runtime_for(tmp_path, fake_llm)
    async with runtime.running():
        chat = Chat(runtime)
        await chat.send("long job")
        while len(fake_llm.requests) < 2:
            await asyncio.sleep(0.01)
        await chat.send("/stop")
        stopped = await chat.final()
        reply = await chat.ask("are you there?")
    assert (stopped.kind, stopped.text) == ("error", "Stopped.")
    assert reply.text == "back"
    last = fake_llm.requests[-1].body["messages"]
    assert any(b.get("type") == "tool_result" for m in last for b in m["content"])


async def test_compaction_summarises_once_and_is_announced(tmp_path: Path, fake_llm: FakeLLM) -> None:
    def respond(rec: Any) -> Any:
        system = json.dumps(rec.body.get("system"))
        return Turn(text="SUMMARY: they talked about padding") if "compress a conversation" in system else Turn(text="ok")

    fake_llm.responder = respond
    runtime = runtime_for(tmp_path, fake_llm, agent={"context_tokens": 8000})
    async with runtime.running():
        chat = Chat(runtime)
        for i in range(8):
            await chat.ask(f"message {i} " + "padding " * 600)
    summaries = [r for r in fake_llm.requests if "compress a conversation" in json.dumps(r.body.get("system"))]
    assert len(summaries) == 1  # one large step, not one per turn
    assert any("summarised" in n for n in chat.kinds("notice"))
    last = json.dumps(fake_llm.requests[-1].body)
    assert SUMMARY_HEADER.strip()[:20] in last and "they talked about padding" in last


async def test_orphan_tool_call_from_a_crash_is_repaired(tmp_path: Path, fake_llm: FakeLLM) -> None:
    runtime = runtime_for(tmp_path, fake_llm)
    path = runtime.workspace / "sessions" / "test%3Ac1.jsonl"
    path.write_text(
        json.dumps({"type": "header", "version": 1, "key": "test:c1", "created": 1.0}) + "\n"
        + json.dumps({"type": "message", "role": "user", "content": [{"type": "text", "text": "go"}], "time": 1.0}) + "\n"
        + json.dumps({"type": "message", "role": "assistant", "time": 2.0, "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "list_dir", "input": {}}]}) + "\n"
        + '{"type":"message","role":"user","con')  # torn by the crash
    async with runtime.running():
        reply = await Chat(runtime).ask("hello again")
    assert reply.kind == "reply"
    messages = fake_llm.requests[0].body["messages"]
    results = [b for m in messages for b in m["content"] if b.get("type") == "tool_result"]
    assert results and results[0]["tool_use_id"] == "toolu_1" and results[0]["is_error"] is True


async def test_unreadable_session_is_set_aside_and_user_told(tmp_path: Path, fake_llm: FakeLLM) -> None:
    runtime = runtime_for(tmp_path, fake_llm)
    (runtime.workspace / "sessions" / "test%3Ac1.jsonl").write_bytes(b"\xff\xfe garbage \x00\x01")
    async with runtime.running():
        chat = Chat(runtime)
        reply = await chat.ask("hi")
    assert reply.kind == "reply"
    assert any("could not be read" in n for n in chat.kinds("notice"))
    assert any(".corrupt-" in p.name for p in (runtime.workspace / "sessions").iterdir())


@pytest.mark.parametrize(("stop", "expected"), [
    ("refusal", "The model declined to answer this request."),
    ("max_tokens", "Cut short\n\n(My answer was cut off at the output limit, llm.max_tokens.)"),
])
async def test_stop_reasons_are_explained(tmp_path: Path, fake_llm: FakeLLM, stop: str, expected: str) -> None:
    fake_llm.script(Turn(text="" if stop == "refusal" else "Cut short", stop=stop))
    runtime = runtime_for(tmp_path, fake_llm)
    async with runtime.running():
        reply = await Chat(runtime).ask("hi")
    assert reply.text == expected


async def test_pause_turn_is_continued(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(Turn(text="Searching...", stop="pause_turn"), Turn(text="Found it."))
    runtime = runtime_for(tmp_path, fake_llm)
    async with runtime.running():
        reply = await Chat(runtime).ask("search")
    assert reply.text == "Found it." and len(fake_llm.requests) == 2


async def test_tool_call_cut_off_by_max_tokens_is_not_run(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(Turn(tool_calls=[("write_file", {"path": "x.txt", "content": "half"})], stop="max_tokens"),
                    Turn(text="retrying later"))
    runtime = runtime_for(tmp_path, fake_llm)
    async with runtime.running():
        await Chat(runtime).ask("write")
    assert not (runtime.workspace / "x.txt").exists()
    assert "cut off at the output token limit" in json.dumps(fake_llm.requests[1].body)


async def test_context_window_overflow_before_any_text_compacts_and_retries(tmp_path: Path, fake_llm: FakeLLM) -> None:
    def respond(rec: Any) -> Any:
        body = json.dumps(rec.body)
        if "compress a conversation" in body:
            return Turn(text="short summary")
        if "short summary" not in body and "third" in body:
            return Turn(text="", stop="model_context_window_exceeded")
        return Turn(text="fine")

    fake_llm.responder = respond
    runtime = runtime_for(tmp_path, fake_llm)
    async with runtime.running():
        chat = Chat(runtime)
        await chat.ask("first")
        await chat.ask("second")
        reply = await chat.ask("third")
    assert reply.text == "fine"
    assert "short summary" in json.dumps(fake_llm.requests[-1].body)


async def test_agents_md_joins_the_system_prompt_and_it_stays_identical(tmp_path: Path, fake_llm: FakeLLM) -> None:
    runtime = runtime_for(tmp_path, fake_llm)
    (runtime.workspace / "AGENTS.md").write_text("Always answer like a pirate.")
    async with runtime.running():
        chat = Chat(runtime)
        await chat.ask("a")
        await chat.ask("b")
    systems = [r.body["system"][0]["text"] for r in fake_llm.requests]
    assert "Always answer like a pirate." in systems[0] and systems[0] == systems[1]
    assert "2026" not in systems[0]  # no timestamps in the system prompt


async def test_stop_with_nothing_running_still_answers(tmp_path: Path, fake_llm: FakeLLM) -> None:
    runtime = runtime_for(tmp_path, fake_llm)
    async with runtime.running():
        reply = await Chat(runtime).ask("/stop")
    assert (reply.kind, reply.text) == ("reply", "Nothing is running.")


async def test_an_unwritable_session_gets_an_error_reply_not_silence(tmp_path: Path, fake_llm: FakeLLM) -> None:
    runtime = runtime_for(tmp_path, fake_llm)
    (runtime.workspace / "sessions" / "test%3Ac1.jsonl").mkdir()  # cannot be opened as a file
    async with runtime.running():
        chat = Chat(runtime)
        reply = await chat.ask("hi")
        other = await chat.ask("hi", chat="c2")
    assert reply.kind == "error" and "test%3Ac1.jsonl" in reply.text
    assert other.kind == "reply"  # the other chat is served


async def test_turn_timeout_is_explained(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(Delay(3, Turn(text="late")), Turn(text="next"))
    runtime = runtime_for(tmp_path, fake_llm, agent={"turn_timeout": 0.3})
    async with runtime.running():
        chat = Chat(runtime)
        reply = await chat.ask("hi")
        after = await chat.ask("again")
    assert reply.kind == "error" and "agent.turn_timeout (0.3 s)" in reply.text
    assert after.text == "next"


async def test_failed_summary_cuts_nothing(tmp_path: Path, fake_llm: FakeLLM) -> None:
    def respond(rec: Any) -> Any:
        return Fail(400, "invalid_request_error", "no") if "compress a conversation" in json.dumps(rec.body) else Turn(text="ok")

    fake_llm.responder = respond
    runtime = runtime_for(tmp_path, fake_llm, agent={"context_tokens": 8000})
    async with runtime.running():
        chat = Chat(runtime)
        for i in range(8):
            await chat.ask(f"message {i} " + "padding " * 600)
    assert not chat.kinds("notice")  # nobody is told old messages were summarised
    assert "message 0 " in json.dumps(fake_llm.requests[-1].body)  # and they are all still sent
    assert '"compaction"' not in (runtime.workspace / "sessions" / "test%3Ac1.jsonl").read_text()


async def test_overflow_after_streamed_text_is_not_answered_twice(tmp_path: Path, fake_llm: FakeLLM) -> None:
    def respond(rec: Any) -> Any:
        body = json.dumps(rec.body)
        if "compress a conversation" in body:
            return Turn(text="short summary")
        if "third" in body and "short summary" not in body:
            return Turn(text="Here is the long answer", stop="model_context_window_exceeded")
        return Turn(text="fine")

    fake_llm.responder = respond
    runtime = runtime_for(tmp_path, fake_llm)
    async with runtime.running():
        chat = Chat(runtime)
        await chat.ask("first")
        await chat.ask("second")
        reply = await chat.ask("third")
    assert reply.kind == "error" and "send your message again" in reply.text
    assert "".join(chat.kinds("delta")).count("Here is the long answer") == 1
