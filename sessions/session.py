"""One conversation, backed by an append-only JSONL file. Get one from ``SessionStore.get``.

    session.append(Message.user_text("hi"), reply)   # one line each, one write, no rewrite
    session.compact("They talked about ...", upto=40)   # messages[:40] -> the summary, and out of memory
    session.active()                                 # what still goes to the model verbatim

Writes open the file in append mode, write every new line with a single ``os.write`` and close it
again, so an append costs the same at message 10 and at message 10,000, no file handle stays open per
chat, and a session renamed by ``SessionStore.reset`` is never written through a stale handle.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import SessionError
from agent.types import Message
from sessions.reader import VERSION
from sessions.repair import error_result, tool_use_ids

# What a message takes in memory besides its text, measured (tests/sessions/test_store.py): its objects,
# and the rendered and provider forms kept once it has been sent to a model.
PER_MESSAGE = 700


@dataclass(eq=False)
class Session:
    key: str
    path: Path
    # The messages not yet summarised, in order. The ones a compaction summarised stay in the file but
    # leave memory (``base`` counts them), so a chat of months takes no more memory than its context.
    messages: list[Message] = field(default_factory=list)
    summary: str | None = None  # the latest compaction summary, standing for the ``base`` messages before
    base: int = 0
    size: int = 0  # about how many bytes of memory ``messages`` take (SessionStore keeps a budget)
    notices: list[str] = field(default_factory=list)  # for the user; the caller clears them once shown
    mask: Callable[[str], str] | None = field(default=None, repr=False)  # hides secrets in what is written

    def append(self, *msgs: Message) -> None:
        """Write one line per message and add them to ``messages``. SessionError if the write fails.

        The file gets every string passed through ``mask`` (a key the user pasted is never stored);
        ``messages`` keeps them as they are while the session stays loaded (read again, it has the mask)."""
        if msgs:
            written = _write(self.path, self.key, [_masked(m.to_json(), self.mask) for m in msgs])
            self.messages.extend(msgs)
            self.size += written + PER_MESSAGE * len(msgs)

    def compact(self, summary: str, upto: int) -> None:
        """Record that ``messages[:upto]`` are represented by ``summary`` from now on, and let them go.
        The file's record counts every message a load yields (``base + upto``), not only those held."""
        if not 0 <= upto <= len(self.messages):
            raise ValueError(f"upto must be between 0 and {len(self.messages)}, not {upto}")
        _write(self.path, self.key, [{"type": "compaction", "summary": self.mask(summary) if self.mask else summary,
                                      "upto": self.base + upto, "time": round(time.time(), 3)}])
        self.drop(upto, summary)

    def drop(self, count: int, summary: str) -> None:
        """Let the first ``count`` messages go from memory (only): ``summary`` stands for them."""
        kept = self.messages[count:]
        self.size = self.size * len(kept) // max(len(self.messages), 1)  # messages are alike enough
        self.summary, self.base, self.messages = summary, self.base + count, kept

    def active(self) -> list[Message]:
        """The messages not covered by the summary (a copy)."""
        return list(self.messages)

    def repair_tail(self, reason: str) -> list[Message]:
        """Answer the last message's unanswered ``tool_use`` blocks with error results saying ``reason``.

        Use after a turn was cut short (cancelled, crashed) so the session stays valid for providers.
        Returns the appended messages (none if the last message is not an assistant tool call).
        """
        ids = tool_use_ids(self.messages[-1]) if self.messages else []
        if not ids:
            return []
        answer = Message("user", [error_result(i, reason) for i in ids], kind="repair")
        self.append(answer)
        return [answer]


def _masked(value: Any, mask: Callable[[str], str] | None) -> Any:
    """``value`` (a JSON record) with ``mask`` applied to every string in it."""
    if mask is None:
        return value
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, list):
        return [_masked(item, mask) for item in value]
    if isinstance(value, dict):
        return {key: _masked(item, mask) for key, item in value.items()}
    return value


def header(key: str) -> dict[str, Any]:
    return {"type": "header", "version": VERSION, "key": key, "created": round(time.time(), 3)}


def encode_lines(records: list[dict[str, Any]]) -> bytes:
    """One compact JSON line per record, UTF-8, raw non-ASCII text kept readable."""
    text = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in records)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (e.g. from a "\ud800" escape in a platform's JSON) cannot be UTF-8;
        # escaped as \uXXXX they still load back to the very same string.
        return "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode("ascii")


def _write(path: Path, key: str, records: list[dict[str, Any]]) -> int:
    """Append ``records`` (after a header, if the file is new); returns their length in bytes."""
    data = encode_lines(records)  # before opening: a record that cannot be encoded writes nothing
    length = len(data)
    try:
        fd = _open_append(path)
    except OSError as exc:
        raise SessionError(f"Could not open the session file {path}: {exc.strerror or exc}. "
                           f"Check that {path.parent} exists, is writable and the disk is not full.") from exc
    try:
        size = os.fstat(fd).st_size
        if size == 0:  # new (or emptied) file: the header goes first, in the same write
            data = encode_lines([header(key)]) + data
        _write_all(fd, data, size, path)
    finally:
        os.close(fd)
    return length


def _open_append(path: Path) -> int:
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(path, flags, 0o600)
    except FileNotFoundError:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return os.open(path, flags, 0o600)


def _write_all(fd: int, data: bytes, size: int, path: Path) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
    except OSError as exc:
        try:  # leave no half line behind for the next append to continue
            os.ftruncate(fd, size)
        except OSError:
            pass  # the next load drops the torn line instead
        raise SessionError(f"Could not write to the session file {path}: {exc.strerror or exc}. "
                           "Free some disk space or fix the file's permissions.") from exc
