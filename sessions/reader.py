"""Reading one session file into messages, tolerating what a crash or a hand edit leaves behind.

    parsed = read_session(path)   # None for a missing or empty file; raises Unreadable
    parsed = parse_bytes(data)    # the same for bytes already in memory (an archived file)
    parsed.messages, parsed.compaction, parsed.bad_lines, parsed.truncate_to, parsed.missing_newline

What counts as what:

- the first line must be a version-1 header, else the whole file is ``Unreadable`` (the store moves it
  aside and starts over);
- the *torn tail* is what follows the last line that is JSON: lines that are not JSON (cut short,
  zeros from a power cut, not UTF-8), plus an unterminated last line that is not a valid record.
  ``truncate_to`` is the byte length that cuts it off, so the file ends on a clean line again and the
  next load finds nothing to cut. A valid record that only lacks its newline is kept
  (``missing_newline``): a JSON object cut short never parses;
- any other line that is not a valid record is skipped and listed in ``bad_lines`` (1-based);
- blank lines and records of unknown ``type`` (from a newer reverie) are ignored.

Lines are split on ``\\n`` bytes only: U+2028 and friends may appear raw inside JSON strings.
"""

from __future__ import annotations

import json
import json.scanner
import logging
from dataclasses import dataclass, field
from pathlib import Path
from sys import intern
from typing import Any

from agent.types import Message, shared

logger = logging.getLogger(__name__)

VERSION = 1

# What json.loads runs, called directly. (typeshed's stub types the argument as a scanner.)
_scan = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


class Unreadable(Exception):
    """The file has no usable header line, so nothing in it can be trusted as a session."""


@dataclass
class Parsed:
    header_key: str | None
    messages: list[Message] = field(default_factory=list)
    compaction: tuple[str, int] | None = None  # the latest (summary, upto); upto is not yet clamped
    bad_lines: list[int] = field(default_factory=list)
    truncate_to: int | None = None  # cut the file to this many bytes to drop the torn tail
    torn_lines: int = 0  # how many lines that cuts off
    missing_newline: bool = False  # the last line is a good record without its "\n"
    size: int = 0  # bytes read
    # False when no line can hold a tool block, so pairing needs no check: json.dumps writes the type
    # as "tool_use"/"tool_result" verbatim, and spelling it otherwise needs a \u escape.
    tool_blocks: bool = True


def read_session(path: Path) -> Parsed | None:
    """Parse ``path``; None when it does not exist or is empty. OSError for other I/O failures."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if not data:
        return None
    return parse_bytes(data)


def parse_bytes(data: bytes) -> Parsed:
    """Parse the whole content of a session file (e.g. one unpacked from an archive); Unreadable if
    it has no header line (an empty file has none)."""
    if not data:
        raise Unreadable("the file is empty")
    lines = data.split(b"\n")
    unterminated = lines[-1] != b""
    if not unterminated:
        lines.pop()
    parsed = Parsed(header_key=parse_header(lines[0]), tool_blocks=b'"tool_' in data or b"\\u" in data,
                    size=len(data))
    keep = _torn_tail_start(lines, unterminated)
    if keep < len(lines):
        parsed.torn_lines = len(lines) - keep
        parsed.truncate_to = len(data) - sum(len(raw) + 1 for raw in lines[keep:]) + (1 if unterminated else 0)
    elif unterminated:
        parsed.missing_newline = True  # the last line is a whole record, only its newline is missing
    messages = parsed.messages
    for number in range(2, keep + 1):
        raw = lines[number - 1]
        try:  # fast path for a well-formed message line; anything else takes the careful one
            text = raw.decode("utf-8")
            rec, end = _scan(text, 0)
            if end == len(text) and rec["type"] == "message":
                messages.append(_message(rec))
                continue
        except (ValueError, KeyError, TypeError, IndexError, StopIteration, RecursionError, OverflowError):
            pass
        if not _take(parsed, raw):
            parsed.bad_lines.append(number)
    return parsed


def _torn_tail_start(lines: list[bytes], unterminated: bool) -> int:
    """How many lines to keep: the lines after the last JSON line (not the header) are a torn tail.

    An unterminated last line is torn unless it is a complete, valid record.
    """
    keep = len(lines)
    if unterminated and keep > 1 and not _take(Parsed(header_key=None), lines[-1]):
        keep -= 1
    while keep > 1:
        try:
            _json(lines[keep - 1])
        except ValueError:  # blank, not UTF-8, not JSON, or cut short
            keep -= 1
            continue
        break
    return keep


def parse_header(raw: bytes) -> str | None:
    """The key named by a header line (None if it names none); Unreadable if it is no header."""
    try:
        rec = _json(raw)
    except ValueError as exc:
        raise Unreadable(f"the first line is not JSON text ({exc})") from None
    if not isinstance(rec, dict) or rec.get("type") != "header":
        raise Unreadable("the first line is not a session header")
    if rec.get("version") != VERSION:
        raise Unreadable(f"unsupported session file version {rec.get('version')!r}")
    key = rec.get("key")
    return key if isinstance(key, str) else None


def read_header_key(path: Path) -> str | None:
    """The key in ``path``'s header, or None when the file is missing or has no good header."""
    try:
        with path.open("rb") as fh:
            first = fh.readline(1 << 16)
        return parse_header(first.rstrip(b"\n"))
    except (OSError, Unreadable):
        return None


def _take(parsed: Parsed, raw: bytes) -> bool:
    """Add one line's record to ``parsed``; False if the line is neither a valid record nor blank."""
    try:
        rec = _json(raw)
    except ValueError:
        return not raw.strip()
    try:
        _add(parsed, rec)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:  # Overflow: a "time" of 10**400
        logger.debug("bad session record: %s", exc)
        return False
    return True


def _json(raw: bytes) -> Any:
    """``json.loads`` for one line, minus its per-call overhead (a third of the load time)."""
    text = raw.decode("utf-8")
    try:
        try:
            value, end = _scan(text, 0)
        except StopIteration:  # leading whitespace, or no JSON value at all: let json.loads decide
            return json.loads(text)
    except RecursionError:  # absurdly nested brackets
        raise ValueError("nested too deeply") from None
    if end != len(text) and text[end:].strip(" \t\r"):
        raise ValueError("extra data after the JSON value")
    return value


def _message(rec: dict[str, Any]) -> Message:
    """``Message.from_json`` without its generic overhead: a sixth of a 10,000-message load.

    tests/sessions/test_store.py::test_fast_message_parse_matches_from_json keeps the two in step.
    """
    role, content = rec["role"], rec["content"]
    if role not in ("user", "assistant") or type(content) is not list:
        raise ValueError("message needs role user|assistant and a list of content blocks")
    for block in content:
        if type(block) is not dict or type(block.get("type")) is not str:
            raise ValueError("every content block needs a string 'type'")
    sender, kind = rec.get("sender"), rec.get("kind", "chat")
    return Message("user" if role == "user" else "assistant", [shared(block) for block in content],
                   float(rec.get("time", 0.0)), intern(sender) if type(sender) is str else sender, rec.get("msg_id"),
                   intern(kind) if type(kind) is str else str(kind))


def _add(parsed: Parsed, rec: Any) -> None:
    kind = rec["type"] if isinstance(rec, dict) else None
    if kind == "message":
        parsed.messages.append(Message.from_json(rec))
    elif kind == "compaction":
        summary, upto = rec["summary"], rec["upto"]
        if not isinstance(summary, str) or type(upto) is not int or upto < 0:
            raise ValueError("compaction needs a string summary and a non-negative int upto")
        parsed.compaction = (summary, upto)
    elif not isinstance(kind, str):
        raise ValueError("a record needs a string 'type'")
    # Other types (a repeated header, records from a newer reverie) are ignored on purpose.
