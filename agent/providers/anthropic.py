"""Anthropic Messages API through the official SDK, streaming, with prompt caching.

Cache breakpoints: the end of the system prompt (which caches the tools too), the newest message, and
the message where the previous call ended (``messages[-3]``: the request before this one ended there,
whether it was the previous step of a tool loop or the previous turn). Earlier blocks are never
changed, so every request is a byte-identical prefix extension of the one before it.
"""

from __future__ import annotations

import logging
from typing import Any

from agent.errors import ContextOverflow, ProviderError
from agent.types import Block, Completion, Message, Request, StopReason, TextSink, ToolCall, Usage

logger = logging.getLogger(__name__)
_EPHEMERAL = {"type": "ephemeral"}
_STOPS: dict[str | None, StopReason] = {
    "end_turn": "end", "stop_sequence": "end", "tool_use": "tool_use", "max_tokens": "max_tokens",
    "pause_turn": "pause", "refusal": "refusal", "model_context_window_exceeded": "context_exceeded",
}


class AnthropicProvider:
    name = "anthropic"
    supports_images = True

    def __init__(self, model: str, api_key: str, base_url: str | None = None, *, timeout: float = 120.0,
                 max_retries: int = 2, temperature: float | None = None) -> None:
        import anthropic  # heavy: imported only when this provider is used

        self.model = model
        self.temperature = temperature
        self._sdk = anthropic
        self._client = anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, timeout=timeout,
                                                max_retries=max_retries)

    async def complete(self, request: Request, on_text: TextSink | None = None) -> Completion:
        params = self.params(request)
        shown = False
        try:
            async with self._client.messages.stream(**params) as stream:
                async for event in stream:
                    if event.type == "text" and event.text and on_text is not None:
                        shown = True
                        await on_text(event.text)
                final = await stream.get_final_message()
        except Exception as exc:
            raise self._translate(exc, shown) from exc
        return _completion(final, self.model)

    def params(self, request: Request) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_tokens,
            "system": [{"type": "text", "text": request.system, "cache_control": _EPHEMERAL}],
            "messages": to_wire(request.messages),
        }
        if request.tools:
            params["tools"] = [{"name": t.name, "description": t.description, "input_schema": t.parameters}
                               for t in request.tools]
        if self.temperature is not None:
            params["temperature"] = self.temperature
        return params

    def _translate(self, exc: Exception, shown: bool) -> Exception:
        sdk = self._sdk
        if isinstance(exc, sdk.AuthenticationError | sdk.PermissionDeniedError):
            return ProviderError(f"Anthropic rejected the API key ({exc.status_code}). "
                                 "Set llm.api_key in the config or ANTHROPIC_API_KEY.")
        if isinstance(exc, sdk.NotFoundError):
            return ProviderError(f"Anthropic does not know the model {self.model!r} (404). Set llm.model.")
        if isinstance(exc, sdk.BadRequestError):
            text = _api_message(exc)
            if "too long" in text or "context" in text.lower():
                return ContextOverflow(f"The conversation is too long for {self.model}: {text}")
            return ProviderError(f"Anthropic refused the request (400): {text}")
        if isinstance(exc, sdk.APIStatusError):
            code = exc.status_code
            what = "failed during the answer" if code == 200 else f"answered {code}"
            # The SDK already retried HTTP errors; an error event inside a stream (200) it does not retry.
            return ProviderError(f"Anthropic {what}: {_api_message(exc)}", retryable=code == 200, shown=shown)
        if isinstance(exc, sdk.APIError) or _is_transport_error(exc):
            return ProviderError(f"Could not reach Anthropic: {type(exc).__name__}: {exc}",
                                 retryable=not isinstance(exc, sdk.APIConnectionError), shown=shown)
        return exc


def to_wire(messages: list[Message]) -> list[dict[str, Any]]:
    """Messages in the API's shape: same-role runs merged, empty text dropped, cache marks placed."""
    wire: list[dict[str, Any]] = []
    for msg in messages:
        blocks = msg.derived("anthropic", _blocks)
        if wire and wire[-1]["role"] == msg.role:
            wire[-1]["content"].extend(blocks)
        else:
            wire.append({"role": msg.role, "content": list(blocks)})
    for item in wire:
        if not item["content"]:
            item["content"] = [{"type": "text", "text": "(empty)"}]
    for index in {len(wire) - 1, len(wire) - 3}:
        if index >= 0:
            last = dict(wire[index]["content"][-1])
            last["cache_control"] = _EPHEMERAL
            wire[index]["content"] = [*wire[index]["content"][:-1], last]
    return wire


def _blocks(msg: Message) -> list[Block]:
    # The API rejects text blocks that are empty or only whitespace.
    blocks = [_block(b) for b in msg.content if not (b.get("type") == "text" and not str(b.get("text", "")).strip())]
    same = len(blocks) == len(msg.content) and all(a is b for a, b in zip(blocks, msg.content, strict=True))
    return msg.content if same else blocks  # already in wire form: kept once, not twice


def _block(block: Block) -> Block:
    kind = block.get("type")
    if kind == "image":
        return {"type": "image", "source": {"type": "base64", "media_type": block["media_type"],
                                            "data": block["data"]}}
    if kind == "tool_result":
        content = block.get("content", "")
        wire = [_block(b) for b in content] if isinstance(content, list) else str(content)
        return {"type": "tool_result", "tool_use_id": block["tool_use_id"], "content": wire,
                "is_error": bool(block.get("is_error"))}
    if kind == "tool_use":
        return {"type": "tool_use", "id": block["id"], "name": block["name"], "input": block.get("input", {})}
    if kind == "text" and len(block) == 2 and type(block.get("text")) is str:
        return block  # already in wire form: shared, not copied (to_wire copies before adding marks)
    return {"type": "text", "text": str(block.get("text", ""))}


def _completion(final: Any, model: str) -> Completion:
    content: list[Block] = []
    calls: list[ToolCall] = []
    for block in final.content:
        if block.type == "text":
            content.append({"type": "text", "text": block.text})
        elif block.type == "tool_use":
            args = block.input if isinstance(block.input, dict) else {}
            content.append({"type": "tool_use", "id": block.id, "name": block.name, "input": args})
            calls.append(ToolCall(block.id, block.name, args))
    u = final.usage
    usage = Usage(u.input_tokens or 0, u.output_tokens or 0, u.cache_read_input_tokens or 0,
                  u.cache_creation_input_tokens or 0)
    text = "".join(b["text"] for b in content if b["type"] == "text")
    return Completion(text, calls, _STOPS.get(final.stop_reason, "end"), usage,
                      getattr(final, "model", None) or model, content)


def _api_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
    return str(getattr(exc, "message", exc))


def _is_transport_error(exc: Exception) -> bool:
    """httpx2 errors that escape the SDK when a stream is cut (the SDK does not wrap them)."""
    return type(exc).__module__.startswith(("httpx", "httpcore", "h11")) or isinstance(exc, OSError)
