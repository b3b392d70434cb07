"""What the model sees: the system prompt, the history window, and compaction when it grows too big.

The system prompt is built from files and holds nothing that changes per turn, so it is byte-identical
between turns (provider prompt caching depends on it). It is rebuilt only when one of its files
changes (modification time). User messages carry their send time in a first line rendered from the
stored timestamp, so the rendering of old messages never changes either.
"""

from __future__ import annotations

import base64
import json
import logging
import weakref
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent import prompts
from agent.types import Block, Message, ToolSpec, result_text

if TYPE_CHECKING:
    from sessions import Session

logger = logging.getLogger(__name__)
WORKSPACE_PROMPTS = ("AGENTS.md", "SOUL.md")
SUMMARY_HEADER = "[Summary of the earlier conversation, written by reverie when it was compacted]\n"
IMAGE_TOKENS = 1600
MAX_IMAGE_BYTES = 5_000_000


class SystemPrompt:
    """``system()`` returns the same string until a prompt file changes."""

    def __init__(self, workspace: Path, extra: Callable[[], str] | None = None) -> None:
        self.workspace = workspace
        self.extra = extra  # later parts (skills, memory) add text here; it must be stable too
        self._stamp: tuple[Any, ...] | None = None
        self._text = ""

    def system(self) -> str:
        stamp = tuple(_mtime(self.workspace / name) for name in WORKSPACE_PROMPTS)
        extra = self.extra() if self.extra else ""
        if (stamp, extra) != self._stamp:
            self._stamp = (stamp, extra)
            self._text = self._build(extra)
        return self._text

    def _build(self, extra: str) -> str:
        parts = [prompts.load("system"), f"Your workspace folder is {self.workspace}."]
        for name in WORKSPACE_PROMPTS:
            path = self.workspace / name
            if path.is_file():
                text = path.read_text(encoding="utf-8", errors="replace").strip()
                parts.append(f"## {name} (written by your owner)\n\n{text}")
        if extra:
            parts.append(extra)
        return "\n\n".join(parts)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def render(messages: list[Message], summary: str | None) -> list[Message]:
    """The history as sent: time lines on user text, the compaction summary in front."""
    out = [_rendered(msg) for msg in messages]
    if summary:
        head = {"type": "text", "text": SUMMARY_HEADER + summary}
        if out and out[0].role == "user" and not out[0].tool_results:
            first = out[0]
            out[0] = Message("user", [head, *first.content], first.time, first.sender, first.msg_id, first.kind)
        else:
            out.insert(0, Message("user", [head]))
    return out


def _rendered(msg: Message) -> Message:
    if msg.role == "user" and msg.tool_results:
        return _with_tool_images(msg)
    if msg.role != "user" or msg.kind not in ("chat", "scheduled"):
        return msg
    if any(b.get("type") == "image" for b in msg.content):
        return _with_time(msg)  # an image's bytes are read for each request, never kept between turns
    return msg.derived("rendered", _with_time)


def _with_time(msg: Message) -> Message:
    label = "scheduled message" if msg.kind == "scheduled" else "sent"
    when = datetime.fromtimestamp(msg.time).astimezone().strftime("%Y-%m-%d %H:%M %Z").strip()
    content = [{"type": "text", "text": f"[{label} {when}]"}, *(_load_image(b) for b in msg.content)]
    return Message("user", content, msg.time, msg.sender, msg.msg_id, msg.kind)


def _with_tool_images(msg: Message) -> Message:
    """Tool results that returned images (stored by path) carry the bytes when sent."""
    if not any(isinstance(b.get("content"), list) for b in msg.content):
        return msg
    content = [{**b, "content": [_load_image(x) for x in b["content"]]} if isinstance(b.get("content"), list)
               else b for b in msg.content]
    return Message(msg.role, content, msg.time, msg.sender, msg.msg_id, msg.kind)


def _load_image(block: Block) -> Block:
    """Images are stored by path (sessions stay small); the request carries their bytes."""
    if block.get("type") != "image" or "data" in block:
        return block
    try:
        data = Path(block["path"]).read_bytes()
    except (OSError, KeyError):
        return {"type": "text", "text": f"[An image that is no longer available: {block.get('path')}]"}
    if len(data) > MAX_IMAGE_BYTES:
        return {"type": "text", "text": f"[An image too large to show the model: {block['path']}]"}
    return {"type": "image", "media_type": block.get("media_type", "image/jpeg"),
            "data": base64.b64encode(data).decode()}


def estimate(msg: Message) -> int:
    """Rough token count (4 characters a token), without any tokenizer download."""
    chars = 0
    for block in msg.content:
        kind = block.get("type")
        if kind == "text":
            chars += len(block.get("text", ""))
        elif kind == "image":
            chars += IMAGE_TOKENS * 4
        elif kind == "tool_use":
            chars += len(block.get("name", "")) + len(json.dumps(block.get("input", {}), ensure_ascii=False))
        elif kind == "tool_result":
            content = block.get("content", "")
            images = sum(1 for b in content if b.get("type") == "image") if isinstance(content, list) else 0
            chars += len(result_text(content)) + images * IMAGE_TOKENS * 4
    return chars // 4 + 4


def estimate_fixed(system: str, tools: list[ToolSpec]) -> int:
    return (len(system) + sum(len(t.description) + len(json.dumps(t.parameters)) for t in tools)) // 4


class TokenCounter:
    """Running token estimate per session; adds only messages appended since the last call."""

    def __init__(self) -> None:
        # session -> (its base, messages counted, tokens); forgotten with the session (/new, eviction),
        # and a compaction (a new base) starts over
        self._seen: weakref.WeakKeyDictionary[Session, tuple[int, int, int]] = weakref.WeakKeyDictionary()

    def active_tokens(self, session: Session) -> int:
        messages = session.messages
        base, counted, tokens = self._seen.get(session, (session.base, 0, 0))
        if base != session.base or counted > len(messages):
            counted, tokens = 0, 0
        tokens += sum(estimate(m) for m in messages[counted:])
        self._seen[session] = (session.base, len(messages), tokens)
        return tokens


def cut_point(messages: list[Message], keep_tokens: int) -> int:
    """Where to cut so the newest ~keep_tokens stay: always at a plain user message, never mid tool loop."""
    starts = [i for i in range(1, len(messages)) if messages[i].role == "user" and not messages[i].tool_results]
    if not starts:
        return 0
    kept = 0
    best = starts[-1]
    for i in range(len(messages) - 1, 0, -1):
        kept += estimate(messages[i])
        if kept > keep_tokens:
            break
        if i in starts:
            best = i
    return best


def transcript(messages: list[Message], limit_chars: int) -> str:
    """Plain-text transcript for the summariser; long tool output is shortened, newest text kept."""
    lines = []
    for msg in messages:
        for block in msg.content:
            kind = block.get("type")
            if kind == "text" and block.get("text"):
                lines.append(f"{msg.role.title()}: {block['text']}")
            elif kind == "tool_use":
                args = json.dumps(block.get("input", {}), ensure_ascii=False)[:300]
                lines.append(f"Assistant called {block.get('name')}({args})")
            elif kind == "tool_result":
                lines.append(f"Tool result: {result_text(block.get('content', ''))[:500]}")
    text = "\n".join(lines)
    return text if len(text) <= limit_chars else "[...]\n" + text[-limit_chars:]
