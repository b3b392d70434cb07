"""What Dream reads: the new lines of each session file, reduced to text people wrote.

    pieces = collect(workspace / "sessions", state, allowed, masker)
    for chunk in chunks(pieces, budget_chars):
        ...   # one model call per chunk

Only user text from allowed senders and the assistant's text answering them is kept. Left out:
tool calls and tool results (fetched pages, file contents, command output), subagent sessions and
reports, scheduled prompts, notices, and every turn started by someone the owner did not allow
(e.g. another member of a group chat). Secrets are replaced by ``[redacted]``, chat-template tokens
are removed, and each message is cut to ``MAX_MESSAGE_CHARS``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from agent.types import Message
from memory.cursors import DreamState, identity

logger = logging.getLogger(__name__)
MAX_MESSAGE_CHARS = 2_000
# (channel, sender) -> how to name the sender ("owner", "user 42"), or None: Dream must not learn from them
Allowed = Callable[[str, str | None], str | None]
Redact = Callable[[str], str]
_TEMPLATE_TOKENS = re.compile(r"<\|[^|<>\n]{0,40}\|>|</?s>|\[/?INST\]")
_OUR_TAGS = re.compile(r"</?(conversations|current_memory|memory|removed)>", re.IGNORECASE)


@dataclass
class Piece:
    """The new part of one session file."""

    ident: str  # memory.cursors identity: where the cursor is kept
    key: str  # session key, e.g. telegram:12345
    end: int  # byte offset just after the last complete line read: the cursor once consolidated
    messages: int = 0  # message lines read, kept or not
    lines: list[str] = field(default_factory=list)  # "[2026-12-04 10:01] owner: ..." for the kept ones
    last_time: float = 0.0  # the time of the newest message read: where to resume if the file is edited


def collect(root: Path, state: DreamState, allowed: Allowed, redact: Redact) -> list[Piece]:
    """A ``Piece`` for every session file in ``root`` that changed since its cursor."""
    pieces = []
    for path in sorted(root.glob("*.jsonl")):
        ident = identity(path)
        if ident is None:
            continue
        start = state.cursors.get(ident, 0)
        try:
            if path.stat().st_size == start:
                continue
            messages, end, edited = read_from(path, start)
        except OSError:
            continue  # unreadable now (permissions, vanished): the cursor stays, the next run retries
        if edited:  # someone edited the file by hand before the cursor: go by the time of the last message read
            logger.warning("Session file %s was edited before the part Dream had read; reading the messages "
                           "newer than the last one it read", path)
            messages = [m for m in messages if m.time > state.times.get(ident, 0.0)]
        key = ident.rsplit("@", 1)[0]
        last = max((m.time for m in messages), default=state.times.get(ident, 0.0))
        piece = Piece(ident, key, end, len(messages), last_time=last)
        piece.lines = keep(key, messages, allowed, redact)
        pieces.append(piece)
    return pieces


def read_from(path: Path, start: int) -> tuple[list[Message], int, bool]:
    """The messages in the complete lines after byte ``start``, the offset after the last of them, and
    whether the file had to be read from its beginning because ``start`` is no longer a line boundary.

    A line being written right now (no newline yet) is left for the next run; a damaged line is skipped.
    """
    with path.open("rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        edited = start > size or (start > 0 and (fh.seek(start - 1) >= 0 and fh.read(1) != b"\n"))
        if edited:
            start = 0
        fh.seek(start)
        data = fh.read()
    cut = data.rfind(b"\n") + 1
    messages = []
    for raw in data[:cut].splitlines():
        try:
            record = json.loads(raw)
            if isinstance(record, dict) and record.get("type") == "message":
                messages.append(Message.from_json(record))
        except (ValueError, KeyError, TypeError):
            continue
    return messages, start + cut, edited


def keep(key: str, messages: list[Message], allowed: Allowed, redact: Redact) -> list[str]:
    """The transcript lines of ``messages`` that Dream may learn from."""
    channel = key.split(":", 1)[0]
    if channel == "subagent":
        return []
    lines: list[str] = []
    person: str | None = None  # who started the current turn, if Dream may learn from them
    for msg in messages:
        if msg.role == "user" and msg.kind == "scheduled":
            person = None  # nor the answer to it: a briefing is built from tools, not from a person
        if msg.kind != "chat" or (msg.role == "user" and msg.tool_results):
            continue
        if msg.role == "user":
            sender = msg.sender or ""
            person = None if sender.startswith("subagent:") else allowed(channel, msg.sender)
        who = person if msg.role == "user" else "assistant"
        text = clean(msg.text, redact)
        if person and text:
            lines.append(f"[{datetime.fromtimestamp(msg.time):%Y-%m-%d %H:%M}] {who}: {text}")
    return lines


def clean(text: str, redact: Redact) -> str:
    text = _OUR_TAGS.sub(lambda m: f"[{m.group(1)}]", _TEMPLATE_TOKENS.sub("", redact(text))).strip()
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[:MAX_MESSAGE_CHARS] + " […]"
    return text.replace("\n", "\n    ")  # continuation lines stay inside their message


def take(pieces: list[Piece], limit: int) -> list[Piece]:
    """The pieces, in order, whose kept lines fit in ``limit`` characters (at least one; empty ones always)."""
    out, size = [], 0
    for piece in pieces:
        cost = sum(len(line) + 1 for line in piece.lines)
        if cost and size and size + cost > limit:
            continue
        out.append(piece)
        size += cost
    return out


def chunks(pieces: list[Piece], budget: int) -> Iterator[str]:
    """The kept lines as ``## key`` blocks, at most about ``budget`` characters per chunk."""
    out: list[str] = []
    size = 0
    for piece in pieces:
        heading = f"## {piece.key}"
        for index, line in enumerate(piece.lines):
            if out and size + len(line) + 1 > budget:
                yield "\n".join(out)
                out, size = [], 0
            if not out or index == 0:
                out.append(heading if index == 0 else f"{heading} (continued)")
                size += len(out[-1]) + 1
            out.append(line)
            size += len(line) + 1
    if out:
        yield "\n".join(out)
