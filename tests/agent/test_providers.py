"""Providers against the stand-in: quirks of OpenAI-compatible servers, faults, and secret masking."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.logs import MASK, setup_logging
from agent.providers.anthropic import to_wire
from agent.types import Message
from tests.fakes.llm import Delay, ErrorIn200, Fail, FakeLLM, Turn
from tests.fakes.runtime import Chat, runtime_for


async def test_deepseek_reasoning_is_neither_shown_nor_stored(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(Turn(text="The answer is 4.", reasoning="Let me think: 2 plus 2..."), Turn(text="ok"))
    runtime = runtime_for(tmp_path, fake_llm, "openai")
    async with runtime.running():
        chat = Chat(runtime)
        reply = await chat.ask("2+2?")
        await chat.ask("thanks")
    assert reply.text == "The answer is 4."
    assert "Let me think" not in "".join(o.text for o in chat.out)
    assert "Let me think" not in json.dumps(fake_llm.requests[1].body)
    assert "Let me think" not in (runtime.workspace / "sessions" / "test%3Ac1.jsonl").read_text()


async def test_tool_calls_without_ids_get_unique_ones(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(Turn(tool_calls=[("list_dir", {}), ("list_dir", {"path": "."})], omit_tool_ids=True),
                    Turn(text="two listings"))
    runtime = runtime_for(tmp_path, fake_llm, "openai")
    async with runtime.running():
        reply = await Chat(runtime).ask("list twice")
    assert reply.text == "two listings"
    messages = fake_llm.requests[1].body["messages"]
    call_ids = [c["id"] for m in messages for c in m.get("tool_calls") or []]
    result_ids = [m["tool_call_id"] for m in messages if m["role"] == "tool"]
    assert len(set(call_ids)) == 2 and call_ids == result_ids


async def test_error_inside_a_200_stream_is_retried(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(ErrorIn200("upstream exploded"), Turn(text="recovered"))
    runtime = runtime_for(tmp_path, fake_llm, "openai")
    async with runtime.running():
        reply = await Chat(runtime).ask("hi")
    assert reply.text == "recovered" and len(fake_llm.requests) == 2


async def test_invalid_tool_arguments_reach_the_model_as_an_error(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(Turn(tool_calls=[("read_file", {"path": 42})]), Turn(text="fixed"))
    runtime = runtime_for(tmp_path, fake_llm, "openai")
    async with runtime.running():
        await Chat(runtime).ask("read")
    tool = next(m for m in fake_llm.requests[1].body["messages"] if m["role"] == "tool")
    assert tool["content"].startswith("Error:") and "path" in tool["content"]


@pytest.mark.parametrize("api", ["anthropic", "openai"])
async def test_sdk_retries_429_and_529_with_retry_after(tmp_path: Path, fake_llm: FakeLLM, api: str) -> None:
    fake_llm.script(Fail(429, "rate_limit_error"), Fail(529), Turn(text="third time"))
    runtime = runtime_for(tmp_path, fake_llm, api, llm={"max_retries": 2})
    async with runtime.running():
        reply = await Chat(runtime).ask("hi")
    assert reply.text == "third time" and len(fake_llm.requests) == 3


async def test_a_stalled_model_times_out_with_a_message_and_the_next_turn_works(
        tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(Delay(3, Turn(text="late")), Turn(text="on time"))
    runtime = runtime_for(tmp_path, fake_llm, llm={"timeout": 0.3})
    async with runtime.running():
        chat = Chat(runtime)
        stalled = await chat.ask("hi")
        reply = await chat.ask("again")
    assert stalled.kind == "error" and "Could not reach Anthropic" in stalled.text
    assert reply.text == "on time"


async def test_unknown_model_says_which_key_to_fix(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(Fail(404, "not_found_error", "model: claude-nope"))
    runtime = runtime_for(tmp_path, fake_llm, llm={"model": "claude-nope"})
    async with runtime.running():
        reply = await Chat(runtime).ask("hi")
    assert reply.kind == "error" and "'claude-nope'" in reply.text and "llm.model" in reply.text


def test_same_role_messages_are_merged_and_empty_text_dropped() -> None:
    wire = to_wire([Message.user_text("a"), Message.user_text("b"),
                    Message("assistant", [{"type": "text", "text": ""}])])
    assert [m["role"] for m in wire] == ["user", "assistant"]
    assert [b["text"] for b in wire[0]["content"]] == ["a", "b"]
    assert wire[1]["content"][0]["text"] == "(empty)"


def test_wire_forms_share_blocks_with_the_session_but_never_change_them(tmp_path: Path) -> None:
    """The Anthropic form reuses a message's own blocks (no copy): building requests, marks for prompt
    caching included, must leave the session's messages as they were, turn after turn."""
    from agent.context import render
    from agent.providers import openai_compat

    image = tmp_path / "cat.png"
    image.write_bytes(b"\x89PNG fake")
    history = [Message.user_text("first"), Message("assistant", [{"type": "text", "text": "one"}]),
               Message("user", [{"type": "text", "text": "look"},
                                {"type": "image", "media_type": "image/png", "path": str(image)}]),
               Message("assistant", [{"type": "text", "text": "a cat"}]), Message.user_text("last")]
    before = json.dumps([m.content for m in history])
    requests = []
    for _ in range(3):  # the later ones from the kept forms
        rendered = render(history, "a summary")
        requests.append(json.dumps([to_wire(rendered), openai_compat.to_wire("system", rendered)]))
    assert json.dumps([m.content for m in history]) == before
    assert requests[0] == requests[1] == requests[2] and "cache_control" in requests[0]
    assert render(history, None)[2] is not render(history, None)[2]  # image bytes are never kept


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    yield None
    for handler in root.handlers:
        handler.close()
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


@pytest.mark.usefixtures("restore_logging")
def test_secrets_are_masked_in_every_log_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123456:telegram-token-value-xyz")
    setup_logging(tmp_path, {"sk-ant-config-secret-123"})
    log = logging.getLogger("reverie.test")
    log.warning("calling with key %s", "sk-ant-config-secret-123")
    log.info("url https://api.telegram.org/bot123456:telegram-token-value-xyz/getMe")
    try:
        raise ValueError("boom sk-ant-config-secret-123")
    except ValueError:
        log.exception("failed")
    logging.getLogger("httpx").info("HTTP Request: POST https://example/bot123456:telegram-token-value-xyz")
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = (tmp_path / "logs" / "reverie.log").read_text()
    assert "calling with key ***" in text and "boom ***" in text
    assert "sk-ant-config-secret-123" not in text and "telegram-token-value" not in text
    assert "HTTP Request" not in text  # httpx sits at WARNING
    assert MASK("pasted sk-ant-api03-abcdefghijklmnop in chat") == "pasted *** in chat"


async def test_server_that_rejects_stream_options_still_works(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(Fail(400, "invalid_request_error", "Unrecognized request argument: stream_options"),
                    Turn(text="fine"), Turn(text="still fine"))
    runtime = runtime_for(tmp_path, fake_llm, "openai")
    async with runtime.running():
        chat = Chat(runtime)
        assert (await chat.ask("hi")).text == "fine"
        assert (await chat.ask("again")).text == "still fine"
    assert ["stream_options" in r.body for r in fake_llm.requests] == [True, False, False]
