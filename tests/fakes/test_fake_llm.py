"""The fake LLM server, driven by the real anthropic and openai SDKs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from tests.fakes.llm import Delay, ErrorIn200, Fail, FakeLLM, Recorded, StreamError, Turn

MSGS: list[Any] = [{"role": "user", "content": "hi"}]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def ant(fake_llm: FakeLLM) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(api_key="sk-fake", base_url=fake_llm.url, max_retries=2) as client:
        yield client


@pytest.fixture
async def oai(fake_llm: FakeLLM) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(api_key="sk-fake", base_url=fake_llm.openai_url) as client:
        yield client


async def test_anthropic_streamed_text(fake_llm: FakeLLM, ant: anthropic.AsyncAnthropic) -> None:
    fake_llm.script(Turn(text="Hello there, world!"))
    async with ant.messages.stream(model="claude-x", max_tokens=100, messages=MSGS) as stream:
        pieces = [t async for t in stream.text_stream]
        final = await stream.get_final_message()
    assert pieces == ["Hello th", "ere, wor", "ld!"]
    assert final.content[0].type == "text" and final.content[0].text == "Hello there, world!"
    assert final.stop_reason == "end_turn"
    assert final.model == "claude-x"


async def test_anthropic_streamed_tool_use(fake_llm: FakeLLM, ant: anthropic.AsyncAnthropic) -> None:
    args = {"tz": "UTC", "nested": {"list": [1, 2, 3], "s": 'a "quoted" ünïcode'}}
    fake_llm.script(Turn(text="Checking", tool_calls=[("get_time", args), ("noop", {})], chunk=3))
    async with ant.messages.stream(model="m", max_tokens=100, messages=MSGS) as stream:
        final = await stream.get_final_message()
    assert [b.type for b in final.content] == ["text", "tool_use", "tool_use"]
    first, second = final.content[1], final.content[2]
    assert first.type == "tool_use" and second.type == "tool_use"
    assert (first.name, first.input, first.id) == ("get_time", args, "toolu_fake_0001_0")
    assert (second.name, second.input) == ("noop", {})
    assert final.stop_reason == "tool_use"


async def test_anthropic_non_stream_json_and_usage(fake_llm: FakeLLM, ant: anthropic.AsyncAnthropic) -> None:
    fake_llm.script(
        Turn(tool_calls=[("read", {"path": "/x"})], usage=(100, 20, 30, 40)),
        Turn(text="cut", stop="max_tokens"),
    )
    msg = await ant.messages.create(model="m", max_tokens=100, messages=MSGS)
    assert [b.type for b in msg.content] == ["tool_use"]
    assert msg.stop_reason == "tool_use"
    u = msg.usage
    assert (u.input_tokens, u.output_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens) == (
        100,
        20,
        30,
        40,
    )
    msg = await ant.messages.create(model="m", max_tokens=100, messages=MSGS)
    assert msg.stop_reason == "max_tokens"


async def test_anthropic_stream_usage(fake_llm: FakeLLM, ant: anthropic.AsyncAnthropic) -> None:
    fake_llm.script(Turn(text="x", usage=(7, 3, 11, 13)))
    async with ant.messages.stream(model="m", max_tokens=100, messages=MSGS) as stream:
        u = (await stream.get_final_message()).usage
    assert (u.input_tokens, u.output_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens) == (
        7,
        3,
        11,
        13,
    )


async def test_anthropic_retries_529_then_succeeds(fake_llm: FakeLLM, ant: anthropic.AsyncAnthropic) -> None:
    fake_llm.script(Fail(529), Turn(text="recovered"))
    msg = await ant.messages.create(model="m", max_tokens=100, messages=MSGS)
    assert msg.content[0].type == "text" and msg.content[0].text == "recovered"
    assert len(fake_llm.requests) == 2
    assert [r.headers["x-stainless-retry-count"] for r in fake_llm.requests] == ["0", "1"]


async def test_anthropic_gives_up_after_retries(fake_llm: FakeLLM, ant: anthropic.AsyncAnthropic) -> None:
    fake_llm.script(Fail(529), Fail(429, "rate_limit_error", "Slow down"), Fail(529))
    with pytest.raises(anthropic.OverloadedError):
        await ant.messages.create(model="m", max_tokens=100, messages=MSGS)
    assert len(fake_llm.requests) == 3


async def test_anthropic_stream_error_mid_stream(fake_llm: FakeLLM, ant: anthropic.AsyncAnthropic) -> None:
    fake_llm.script(StreamError(partial="Half an answ"))
    seen: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as info:
        async with ant.messages.stream(model="m", max_tokens=100, messages=MSGS) as stream:
            async for text in stream.text_stream:
                seen.append(text)
    assert "".join(seen) == "Half an answ"
    assert info.value.status_code == 200  # mid-stream errors arrive on a 200 response
    assert len(fake_llm.requests) == 1  # and are not retried by the SDK


async def test_anthropic_stream_dropped_connection(fake_llm: FakeLLM, ant: anthropic.AsyncAnthropic) -> None:
    fake_llm.script(StreamError(partial="Partial", drop=True))
    seen: list[str] = []
    # anthropic 2.12 lets the raw httpx2 error escape here (openai wraps it as APIConnectionError).
    with pytest.raises((anthropic.APIConnectionError, httpx2.TransportError)):
        async with ant.messages.stream(model="m", max_tokens=100, messages=MSGS) as stream:
            async for text in stream.text_stream:
                seen.append(text)
    assert seen == ["Partial"]


async def test_delay_triggers_client_timeout(fake_llm: FakeLLM) -> None:
    fake_llm.script(Delay(5.0, then=Turn(text="late")))
    async with anthropic.AsyncAnthropic(api_key="sk-fake", base_url=fake_llm.url, max_retries=0, timeout=0.1) as client:
        with pytest.raises(anthropic.APITimeoutError):
            await client.messages.create(model="m", max_tokens=10, messages=MSGS)
    # stop() (fixture teardown) must cancel the still-sleeping handler without leaking it.


async def test_requests_recorded(fake_llm: FakeLLM, ant: anthropic.AsyncAnthropic, oai: openai.AsyncOpenAI) -> None:
    await ant.messages.create(model="m", max_tokens=10, system="be brief", messages=MSGS)
    await oai.chat.completions.create(model="gpt-x", messages=MSGS)
    first, second = fake_llm.requests
    assert (first.api, first.path, second.api, second.path) == (
        "anthropic",
        "/v1/messages",
        "openai",
        "/v1/chat/completions",
    )
    assert first.headers["authorization"] == "Bearer sk-fake" or first.headers.get("x-api-key") == "sk-fake"
    assert "anthropic-version" in first.headers
    assert second.headers["authorization"] == "Bearer sk-fake"
    assert first.body["system"] == "be brief" and json.loads(first.raw) == first.body
    assert fake_llm.bodies("openai") == [second.body] and second.body["model"] == "gpt-x"
    assert fake_llm.bodies() == [first.body, second.body]


async def test_responder_and_default(fake_llm: FakeLLM, ant: anthropic.AsyncAnthropic) -> None:
    msg = await ant.messages.create(model="m", max_tokens=10, messages=MSGS)
    assert msg.content[0].type == "text" and msg.content[0].text == "ok"

    def respond(rec: Recorded) -> Turn:
        return Turn(text=f"{len(rec.body['messages'])} messages")

    fake_llm.responder = respond
    fake_llm.script(Turn(text="scripted first"))
    texts = []
    for _ in range(2):
        msg = await ant.messages.create(model="m", max_tokens=10, messages=MSGS)
        texts.append(msg.content[0].text if msg.content[0].type == "text" else "")
    assert texts == ["scripted first", "1 messages"]


async def test_openai_streamed_text_and_usage(fake_llm: FakeLLM, oai: openai.AsyncOpenAI) -> None:
    fake_llm.script(Turn(text="Hello there, world!", usage=(10, 5, 4, 0), stop="length"))
    stream = await oai.chat.completions.create(
        model="gpt", messages=MSGS, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello there, world!"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (14, 5, 19)
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 4


async def test_openai_streamed_tool_calls_accumulate(fake_llm: FakeLLM, oai: openai.AsyncOpenAI) -> None:
    fake_llm.script(
        Turn(text="Let me look", reasoning="thinking...", tool_calls=[("f", {"x": 1}), ("g", {"y": [1, 2]})])
    )
    async with oai.chat.completions.stream(model="gpt", messages=MSGS) as stream:
        final = await stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Let me look"
    calls = choice.message.tool_calls or []
    got = [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls if c.type == "function"]
    assert got == [("call_fake_0001_0", "f", {"x": 1}), ("call_fake_0001_1", "g", {"y": [1, 2]})]
    assert (choice.message.model_extra or {}).get("reasoning_content") == "thinking..."


async def test_openai_tool_calls_without_ids(fake_llm: FakeLLM, oai: openai.AsyncOpenAI) -> None:
    fake_llm.script(Turn(tool_calls=[("f", {"x": 1})], omit_tool_ids=True))
    stream = await oai.chat.completions.create(model="gpt", messages=MSGS, stream=True)
    calls = [tc for c in [c async for c in stream] if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert calls[0].id is None and calls[0].function is not None and calls[0].function.name == "f"


async def test_openai_non_stream_and_retry(fake_llm: FakeLLM, oai: openai.AsyncOpenAI) -> None:
    fake_llm.script(Fail(429, "rate_limit_error", "Slow down"), Turn(tool_calls=[("f", {"x": 1})]))
    done = await oai.chat.completions.create(model="gpt", messages=MSGS)
    assert len(fake_llm.requests) == 2
    choice = done.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = (choice.message.tool_calls or [])[0]
    assert call.type == "function" and json.loads(call.function.arguments) == {"x": 1}
    assert done.usage is not None and done.usage.prompt_tokens == 10


async def test_openai_errors(fake_llm: FakeLLM, oai: openai.AsyncOpenAI) -> None:
    fake_llm.script(StreamError(partial="Partial"), ErrorIn200("boom"), ErrorIn200("boom"))
    stream = await oai.chat.completions.create(model="gpt", messages=MSGS, stream=True)
    with pytest.raises(openai.APIError, match="Stream failed"):
        [c async for c in stream]
    stream = await oai.chat.completions.create(model="gpt", messages=MSGS, stream=True)
    with pytest.raises(openai.APIError, match="boom"):
        [c async for c in stream]
    done = await oai.chat.completions.create(model="gpt", messages=MSGS)
    assert (done.model_extra or {})["error"]["message"] == "boom"  # the SDK does not raise for this one


async def test_unknown_path_is_404(fake_llm: FakeLLM, ant: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.NotFoundError):
        await ant.models.list()
    assert fake_llm.requests == []


async def test_stop_leaves_no_tasks() -> None:
    before = asyncio.all_tasks()
    fake = await FakeLLM().start()
    arrived = asyncio.Event()

    def hang(_rec: Recorded) -> Delay:
        arrived.set()
        return Delay(10)

    fake.responder = hang
    async with anthropic.AsyncAnthropic(api_key="sk-fake", base_url=fake.url, max_retries=0) as client:
        call = asyncio.create_task(client.messages.create(model="m", max_tokens=10, messages=MSGS))
        await arrived.wait()
        await fake.stop()
        with pytest.raises(anthropic.APIConnectionError):
            await call
    assert asyncio.all_tasks() == before


async def test_standalone_process() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.llm",
        "--port",
        "0",
        "--reply",
        "from afar",
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().split()
        assert line[0] == "READY" and line[1].startswith("http://127.0.0.1:")
        async with openai.AsyncOpenAI(api_key="sk-fake", base_url=line[1] + "/v1") as client:
            done = await client.chat.completions.create(model="gpt", messages=MSGS)
        assert done.choices[0].message.content == "from afar"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
