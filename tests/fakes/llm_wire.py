"""Wire formats for the fake LLM server: Anthropic Messages and OpenAI Chat Completions.

Each wire object renders one request's answer, either as a JSON body (dict) or as a list of
already-framed SSE events (bytes). The HTTP framing lives in ``tests.fakes.llm``.

Usage tuples follow Anthropic semantics: (input, output, cache_read, cache_write), where ``input``
excludes cached tokens. On the OpenAI side ``prompt_tokens = input + cache_read`` and
``prompt_tokens_details.cached_tokens = cache_read`` (OpenAI counts cached tokens inside prompt_tokens).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fakes.llm import Turn

JSON = dict[str, Any]


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def sse(event: str | None, data: JSON | str) -> bytes:
    """One SSE event. Anthropic needs the ``event:`` line; OpenAI sends data-only events."""
    payload = data if isinstance(data, str) else dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def pieces(text: str, size: int) -> list[str]:
    size = max(1, size)
    return [text[i : i + size] for i in range(0, len(text), size)]


class AnthropicWire:
    """Anthropic Messages API (``POST /v1/messages``)."""

    def __init__(self, n: int, body: JSON) -> None:
        self.n = n
        self.model = str(body.get("model") or "fake-model")
        self.msg_id = f"msg_fake_{n:04d}"

    def tool_id(self, i: int) -> str:
        return f"toolu_fake_{self.n:04d}_{i}"

    @staticmethod
    def stop_reason(turn: Turn) -> str:
        return turn.stop or ("tool_use" if turn.tool_calls else "end_turn")

    @staticmethod
    def usage(turn: Turn) -> JSON:
        inp, out, cache_read, cache_write = turn.usage
        return {
            "input_tokens": inp,
            "output_tokens": out,
            "cache_read_input_tokens": cache_read,
            "cache_creation_input_tokens": cache_write,
        }

    def _envelope(self, content: list[JSON], stop: str | None, usage: JSON) -> JSON:
        return {
            "id": self.msg_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage,
        }

    def message(self, turn: Turn) -> JSON:
        content: list[JSON] = []
        if turn.text or not turn.tool_calls:
            content.append({"type": "text", "text": turn.text})
        for i, (name, args) in enumerate(turn.tool_calls):
            content.append({"type": "tool_use", "id": self.tool_id(i), "name": name, "input": args})
        return self._envelope(content, self.stop_reason(turn), self.usage(turn))

    def _start(self, usage: JSON) -> list[bytes]:
        start_usage = {**usage, "output_tokens": 1}
        message = self._envelope([], None, start_usage)
        return [
            sse("message_start", {"type": "message_start", "message": message}),
            sse("ping", {"type": "ping"}),
        ]

    @staticmethod
    def _block(index: int, block: JSON, deltas: list[JSON], close: bool = True) -> list[bytes]:
        out = [sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})]
        for delta in deltas:
            out.append(sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
        if close:
            out.append(sse("content_block_stop", {"type": "content_block_stop", "index": index}))
        return out

    @staticmethod
    def _text_deltas(text: str, size: int) -> list[JSON]:
        return [{"type": "text_delta", "text": p} for p in pieces(text, size)]

    def stream(self, turn: Turn) -> list[bytes]:
        usage = self.usage(turn)
        events = self._start(usage)
        index = 0
        if turn.text or not turn.tool_calls:
            events += self._block(0, {"type": "text", "text": ""}, self._text_deltas(turn.text, turn.chunk))
            index = 1
        for i, (name, args) in enumerate(turn.tool_calls):
            block = {"type": "tool_use", "id": self.tool_id(i), "name": name, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces(dumps(args), turn.chunk)]
            events += self._block(index + i, block, deltas)
        delta = {"stop_reason": self.stop_reason(turn), "stop_sequence": None}
        events.append(sse("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
        events.append(sse("message_stop", {"type": "message_stop"}))
        return events

    def partial(self, text: str) -> list[bytes]:
        """The opening of a stream that never finishes: message_start and some text deltas."""
        usage = {"input_tokens": 10, "output_tokens": 1}
        deltas = self._text_deltas(text, 8)
        return self._start(usage) + self._block(0, {"type": "text", "text": ""}, deltas, close=False)

    @staticmethod
    def error_body(error_type: str, message: str) -> JSON:
        return {"type": "error", "error": {"type": error_type, "message": message}}

    def stream_error(self, error_type: str, message: str) -> list[bytes]:
        return [sse("error", self.error_body(error_type, message))]

    def error_in_200(self, message: str) -> JSON:
        return {"error": {"type": "api_error", "message": message}}

    def error_in_200_stream(self, message: str) -> list[bytes]:
        return [sse("error", self.error_in_200(message))]


class OpenAIWire:
    """OpenAI Chat Completions API (``POST /v1/chat/completions``)."""

    def __init__(self, n: int, body: JSON) -> None:
        self.n = n
        self.model = str(body.get("model") or "fake-model")
        self.id = f"chatcmpl-fake{n:04d}"
        self.created = int(time.time())
        options = body.get("stream_options") or {}
        self.include_usage = bool(isinstance(options, dict) and options.get("include_usage"))

    def call_id(self, i: int) -> str:
        return f"call_fake_{self.n:04d}_{i}"

    @staticmethod
    def finish_reason(turn: Turn) -> str:
        return turn.stop or ("tool_calls" if turn.tool_calls else "stop")

    @staticmethod
    def usage(turn: Turn) -> JSON:
        inp, out, cache_read, _cache_write = turn.usage
        prompt = inp + cache_read
        return {
            "prompt_tokens": prompt,
            "completion_tokens": out,
            "total_tokens": prompt + out,
            "prompt_tokens_details": {"cached_tokens": cache_read},
        }

    def _base(self, obj: str) -> JSON:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    def _chunk(self, delta: JSON, finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        chunk = {**self._base("chat.completion.chunk"), "choices": [choice]}
        if self.include_usage:
            chunk["usage"] = None
        return sse(None, chunk)

    def message(self, turn: Turn) -> JSON:
        msg: JSON = {"role": "assistant", "content": turn.text or None}
        if turn.reasoning:
            msg["reasoning_content"] = turn.reasoning
        if turn.tool_calls:
            msg["tool_calls"] = [
                {
                    "id": self.call_id(i),
                    "type": "function",
                    "function": {"name": name, "arguments": dumps(args)},
                }
                for i, (name, args) in enumerate(turn.tool_calls)
            ]
        choice = {"index": 0, "message": msg, "finish_reason": self.finish_reason(turn), "logprobs": None}
        return {**self._base("chat.completion"), "choices": [choice], "usage": self.usage(turn)}

    def _tool_chunks(self, turn: Turn) -> list[bytes]:
        out: list[bytes] = []
        for i, (name, args) in enumerate(turn.tool_calls):
            head: JSON = {"index": i}
            if not turn.omit_tool_ids:
                head["id"] = self.call_id(i)
            head.update(type="function", function={"name": name, "arguments": ""})
            out.append(self._chunk({"tool_calls": [head]}))
            for p in pieces(dumps(args), turn.chunk):
                out.append(self._chunk({"tool_calls": [{"index": i, "function": {"arguments": p}}]}))
        return out

    def stream(self, turn: Turn) -> list[bytes]:
        events = [self._chunk({"role": "assistant", "content": ""})]
        events += [self._chunk({"reasoning_content": p}) for p in pieces(turn.reasoning, turn.chunk)]
        events += [self._chunk({"content": p}) for p in pieces(turn.text, turn.chunk)]
        events += self._tool_chunks(turn)
        events.append(self._chunk({}, self.finish_reason(turn)))
        if self.include_usage:
            events.append(sse(None, {**self._base("chat.completion.chunk"), "choices": [], "usage": self.usage(turn)}))
        events.append(sse(None, "[DONE]"))
        return events

    def partial(self, text: str) -> list[bytes]:
        events = [self._chunk({"role": "assistant", "content": ""})]
        return events + [self._chunk({"content": p}) for p in pieces(text, 8)]

    @staticmethod
    def error_body(error_type: str, message: str) -> JSON:
        return {"error": {"message": message, "type": error_type, "param": None, "code": None}}

    def stream_error(self, error_type: str, message: str) -> list[bytes]:
        return [sse(None, self.error_body(error_type, message)), sse(None, "[DONE]")]

    def error_in_200(self, message: str) -> JSON:
        return {"error": {"message": message, "type": "upstream_error", "code": 502}}

    def error_in_200_stream(self, message: str) -> list[bytes]:
        return [sse(None, self.error_in_200(message)), sse(None, "[DONE]")]


Wire = AnthropicWire | OpenAIWire
