"""Provider-neutral conversation types.

A message's ``content`` is a list of blocks in one canonical shape (the Anthropic one, since it is
the richest); providers translate at their edge:

    {"type": "text", "text": "..."}
    {"type": "image", "media_type": "image/png", "data": "<base64>"}
    {"type": "tool_use", "id": "...", "name": "...", "input": {...}}
    {"type": "tool_result", "tool_use_id": "...", "content": "...", "is_error": false}

Tool results travel in ``user`` messages, right after the assistant message that asked for them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from sys import intern
from typing import Any, Literal, Protocol, TypeVar

Block = dict[str, Any]
_T = TypeVar("_T")
Role = Literal["user", "assistant"]
StopReason = Literal["end", "tool_use", "max_tokens", "refusal", "pause", "context_exceeded"]
# What a tool returns: plain text, or text and image blocks (images by ``path`` in the workspace).
ToolOutput = str | list[Block]


def result_text(content: Any) -> str:
    """The text of a ``tool_result`` content (a string, or a list of text and image blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(b.get("text", "") if b.get("type") == "text" else "[image]"
                         for b in content if isinstance(b, dict))
    return str(content)


def shared(block: Block) -> Block:
    """``block`` with its keys and its type as the one shared copy of each string (``sys.intern``): parsed
    JSON gives every line its own, about 250 bytes more for each short message loaded."""
    return {intern(k): intern(v) if k == "type" and type(v) is str else v for k, v in block.items()}


@dataclass(slots=True)
class Message:
    """One line of a session: who said what, when, and from where. (Slots: a long-running daemon holds
    thousands of these.)"""

    role: Role
    content: list[Block]
    time: float = field(default_factory=time.time)
    sender: str | None = None
    msg_id: str | None = None
    kind: str = "chat"  # chat | scheduled | notice | repair
    # Derived forms (rendered text, provider wire format), computed once: messages never change once
    # stored. Names and values alternate in one flat tuple: a message has one or two, and a dict each
    # would add a fifth to what a short message takes in memory.
    cache: tuple[Any, ...] = field(default=(), repr=False, compare=False)

    def derived(self, name: str, make: Callable[[Message], _T]) -> _T:
        """``make(self)``, computed on first use and kept."""
        cache = self.cache
        for index in range(0, len(cache), 2):
            if cache[index] == name:
                return cache[index + 1]
        value = make(self)
        self.cache = (*cache, name, value)
        return value

    @classmethod
    def user_text(cls, text: str, **kw: Any) -> Message:
        return cls("user", [{"type": "text", "text": text}], **kw)

    @property
    def text(self) -> str:
        return "".join(b.get("text", "") for b in self.content if b.get("type") == "text")

    @property
    def tool_uses(self) -> list[Block]:
        return [b for b in self.content if b.get("type") == "tool_use"]

    @property
    def tool_results(self) -> list[Block]:
        return [b for b in self.content if b.get("type") == "tool_result"]

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": "message", "role": self.role, "content": self.content,
                                "time": round(self.time, 3)}
        for key in ("sender", "msg_id"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        if self.kind != "chat":
            data["kind"] = self.kind
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Message:
        role, content = data["role"], data["content"]
        if role not in ("user", "assistant") or not isinstance(content, list):
            raise ValueError("message needs role user|assistant and a list of content blocks")
        if not all(isinstance(b, dict) and isinstance(b.get("type"), str) for b in content):
            raise ValueError("every content block needs a string 'type'")
        sender = data.get("sender")
        return cls("user" if role == "user" else "assistant", [shared(b) for b in content],
                   float(data.get("time", 0.0)), intern(sender) if type(sender) is str else sender,
                   data.get("msg_id"), intern(str(data.get("kind", "chat"))))


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]
    error: str | None = None  # set when the model's arguments were not valid JSON


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of an object


@dataclass
class Usage:
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0

    @property
    def total(self) -> int:
        return self.input + self.output + self.cache_read + self.cache_write

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.input + other.input, self.output + other.output,
                     self.cache_read + other.cache_read, self.cache_write + other.cache_write)


@dataclass
class Request:
    """What the loop asks of a provider. ``system`` and ``tools`` stay byte-identical between turns."""

    system: str
    messages: list[Message]
    tools: list[ToolSpec]
    max_tokens: int = 4096


@dataclass
class Completion:
    text: str
    tool_calls: list[ToolCall]
    stop: StopReason
    usage: Usage
    model: str
    content: list[Block]  # the assistant message as it should be stored and sent back


TextSink = Callable[[str], Awaitable[None]]


class Provider(Protocol):
    """A model endpoint. ``on_text`` receives answer text as it streams."""

    name: str
    model: str

    async def complete(self, request: Request, on_text: TextSink | None = None) -> Completion: ...
