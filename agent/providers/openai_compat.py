"""Any OpenAI-compatible Chat Completions endpoint through the official ``openai`` SDK.

Quirks normalised here: DeepSeek's ``reasoning_content`` (never shown, never stored), consecutive
same-role messages (merged), errors sent inside a 200 response (raised as retryable), and tool calls
that arrive without ids or with repeated ids (given fresh ``call_*`` ids).
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from agent.errors import ContextOverflow, ProviderError
from agent.providers.anthropic import _api_message, _is_transport_error
from agent.types import Block, Completion, Message, Request, StopReason, TextSink, ToolCall, Usage, result_text

logger = logging.getLogger(__name__)
_STOPS: dict[str | None, StopReason] = {
    "stop": "end", "tool_calls": "tool_use", "function_call": "tool_use", "length": "max_tokens",
    "content_filter": "refusal", None: "end",
}


class OpenAICompatProvider:
    supports_images = True

    def __init__(self, model: str, api_key: str | None, base_url: str | None = None, *, name: str = "openai",
                 timeout: float = 120.0, max_retries: int = 2, temperature: float | None = None) -> None:
        import openai  # heavy: imported only when this provider is used

        self.name = name
        self.model = model
        self.temperature = temperature
        self._sdk = openai
        self._client = openai.AsyncOpenAI(api_key=api_key or "not-needed", base_url=base_url,
                                          timeout=timeout, max_retries=max_retries)
        self.usage_option = True  # some older servers reject stream_options; then we stop sending it

    async def complete(self, request: Request, on_text: TextSink | None = None) -> Completion:
        try:
            return await self._complete(request, on_text)
        except ProviderError as exc:
            if not (self.usage_option and "stream_options" in str(exc)):
                raise
            logger.warning("%s rejects stream_options; retrying without usage reporting", self.name)
            self.usage_option = False
            return await self._complete(request, on_text)

    async def _complete(self, request: Request, on_text: TextSink | None) -> Completion:
        acc = _Accumulator()
        try:
            stream = await self._client.chat.completions.create(**self.params(request))
            async for chunk in stream:
                text = acc.add(chunk)
                if text and on_text is not None:
                    acc.shown = True
                    await on_text(text)
        except ProviderError:
            raise
        except Exception as exc:
            raise self._translate(exc, acc.shown) from exc
        return acc.completion(self.model)

    def params(self, request: Request) -> dict[str, Any]:
        limit_key = "max_completion_tokens" if self.name == "openai" else "max_tokens"
        params: dict[str, Any] = {
            "model": self.model, "stream": True, "messages": to_wire(request.system, request.messages),
            limit_key: request.max_tokens,
        }
        if self.usage_option:
            params["stream_options"] = {"include_usage": True}
        if request.tools:
            params["tools"] = [{"type": "function", "function": {
                "name": t.name, "description": t.description, "parameters": t.parameters}}
                for t in request.tools]
        if self.temperature is not None:
            params["temperature"] = self.temperature
        return params

    def _translate(self, exc: Exception, shown: bool) -> Exception:
        sdk, who = self._sdk, self.name
        if isinstance(exc, sdk.AuthenticationError | sdk.PermissionDeniedError):
            return ProviderError(f"{who} rejected the API key ({exc.status_code}). Set llm.api_key in the "
                                 "config or the provider's key variable (e.g. OPENAI_API_KEY).")
        if isinstance(exc, sdk.NotFoundError):
            return ProviderError(f"{who} does not know the model {self.model!r} or the URL is wrong (404). "
                                 "Check llm.model and llm.base_url.")
        if isinstance(exc, sdk.BadRequestError):
            text = _api_message(exc)
            if "context" in text.lower() or "too long" in text.lower():
                return ContextOverflow(f"The conversation is too long for {self.model}: {text}")
            return ProviderError(f"{who} refused the request (400): {text}")
        if isinstance(exc, sdk.APIStatusError):
            return ProviderError(f"{who} answered {exc.status_code}: {_api_message(exc)}", shown=shown)
        if isinstance(exc, sdk.APIError) or _is_transport_error(exc):
            # The SDK retried connection errors itself; errors inside a stream it does not retry.
            return ProviderError(f"Could not reach {who}: {type(exc).__name__}: {exc}",
                                 retryable=not isinstance(exc, sdk.APIConnectionError), shown=shown)
        return exc


class _Accumulator:
    """Builds one completion from stream chunks, tolerating the common dialects."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.finish: str | None = None
        self.usage = Usage()
        self.model: str | None = None
        self.shown = False

    def add(self, chunk: Any) -> str:
        extra = getattr(chunk, "model_extra", None) or {}
        if extra.get("error"):
            err = extra["error"]
            message = err.get("message", err) if isinstance(err, dict) else err
            raise ProviderError(f"The model endpoint reported an error: {message}", retryable=True,
                                shown=self.shown)
        self.model = getattr(chunk, "model", None) or self.model
        if getattr(chunk, "usage", None):
            self._add_usage(chunk.usage)
        text = ""
        for choice in chunk.choices or []:
            delta = choice.delta
            if delta is not None:
                text += delta.content or ""
                for call in delta.tool_calls or []:
                    self._add_call(call)
            self.finish = choice.finish_reason or self.finish
        self.text.append(text)
        return text

    def _add_call(self, call: Any) -> None:
        index = call.index if call.index is not None else len(self.calls)
        slot = self.calls.setdefault(index, {"id": None, "name": "", "args": ""})
        slot["id"] = slot["id"] or call.id
        if call.function is not None:
            slot["name"] += call.function.name or ""
            slot["args"] += call.function.arguments or ""

    def _add_usage(self, usage: Any) -> None:
        details = getattr(usage, "prompt_tokens_details", None)
        cached = (getattr(details, "cached_tokens", None) or 0) if details else 0
        self.usage = Usage((usage.prompt_tokens or 0) - cached, usage.completion_tokens or 0, cached, 0)

    def completion(self, model: str) -> Completion:
        text = "".join(self.text)
        content: list[Block] = [{"type": "text", "text": text}] if text else []
        calls, seen = [], set()
        for slot in (self.calls[i] for i in sorted(self.calls)):
            call_id = slot["id"] if slot["id"] and slot["id"] not in seen else f"call_{uuid.uuid4().hex[:12]}"
            seen.add(call_id)
            args, error = _parse_args(slot["args"])
            content.append({"type": "tool_use", "id": call_id, "name": slot["name"], "input": args})
            calls.append(ToolCall(call_id, slot["name"], args, error))
        stop = "tool_use" if calls and self.finish != "length" else _STOPS.get(self.finish, "end")
        return Completion(text, calls, stop, self.usage, self.model or model, content)


def _parse_args(raw: str) -> tuple[dict[str, Any], str | None]:
    if not raw.strip():
        return {}, None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        return {}, f"the arguments were not valid JSON ({exc.msg} at position {exc.pos})"
    return (value, None) if isinstance(value, dict) else ({}, "the arguments must be a JSON object")


def to_wire(system: str, messages: list[Message]) -> list[dict[str, Any]]:
    """Chat Completions messages: system first, tool results as ``tool`` messages, runs merged."""
    wire: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for msg in messages:
        for item in msg.derived("openai", _items):
            _append(wire, dict(item))
    return wire


def _items(msg: Message) -> list[dict[str, Any]]:
    if msg.role == "assistant":
        return [_assistant(msg)]
    items = []
    images: list[Block] = []  # tool messages carry text only: images a tool returned follow as user content
    for result in msg.tool_results:
        content = result_text(result.get("content", ""))
        items.append({"role": "tool", "tool_call_id": result["tool_use_id"],
                      "content": f"Error: {content}" if result.get("is_error") else content})
        if isinstance(result.get("content"), list):
            images += [b for b in result["content"] if b.get("type") == "image" and "data" in b]
    if images:
        msg = Message("user", [{"type": "text", "text": "[Images returned by the tools above]"}, *images,
                               *[b for b in msg.content if b.get("type") != "tool_result"]])
    user = _user(msg)
    return [*items, user] if user is not None else items


def _assistant(msg: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": "assistant", "content": msg.text or None}
    if msg.tool_uses:
        out["tool_calls"] = [{"id": b["id"], "type": "function", "function": {
            "name": b["name"], "arguments": json.dumps(b.get("input", {}), ensure_ascii=False)}}
            for b in msg.tool_uses]
    return out


def _user(msg: Message) -> dict[str, Any] | None:
    images = [b for b in msg.content if b.get("type") == "image"]
    if not images:
        return {"role": "user", "content": msg.text} if msg.text else None
    parts: list[dict[str, Any]] = [{"type": "text", "text": msg.text}] if msg.text else []
    parts += [{"type": "image_url", "image_url": {"url": f"data:{b['media_type']};base64,{b['data']}"}}
              for b in images]
    return {"role": "user", "content": parts}


def _append(wire: list[dict[str, Any]], item: dict[str, Any]) -> None:
    prev = wire[-1] if len(wire) > 1 else None
    mergeable = prev is not None and prev["role"] == item["role"] != "tool" and not prev.get("tool_calls")
    if mergeable and isinstance(prev["content"], str) and isinstance(item["content"], str):  # type: ignore[index]
        prev["content"] = f"{prev['content']}\n\n{item['content']}"  # type: ignore[index]
        if item.get("tool_calls"):
            prev["tool_calls"] = item["tool_calls"]  # type: ignore[index]
        return
    wire.append(item)
