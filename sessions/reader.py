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

import io
import json
import json.scanner
import logging
from collections.abc import Iterable
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
    """Parse ``path``; None when it does not exist or is empty. OSError for other I/O failures.

    The file is read a line at a time, so a load holds what it parsed, never the file's bytes too."""
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        return None
    with fh:
        return _parse(fh)


def parse_bytes(data: bytes) -> Parsed:
    """Parse the whole content of a session file (e.g. one unpacked from an archive); Unreadable if
    it has no header line (an empty file has none)."""
    parsed = _parse(io.BytesIO(data))
    if parsed is None:
        raise Unreadable("the file is empty")
    return parsed


def _parse(lines: Iterable[bytes]) -> Parsed | None:
    """Parse lines as a binary file yields them (each with its ``\\n``, except perhaps the last).

    Lines that are not JSON wait in ``suspect`` (their number, where they start, whether blank) until
    a JSON line shows they are not the torn tail; then they are bad lines, or ignored if blank."""
    it = iter(lines)
    first = next(it, b"")
    if not first:
        return None
    parsed = Parsed(header_key=parse_header(first.removesuffix(b"\n")), tool_blocks=False)
    offset, number, last = len(first), 1, first
    suspect: list[tuple[int, int, bool]] = []
    for last in it:
        number, start, offset = number + 1, offset, offset + len(last)
        raw = last.removesuffix(b"\n")
        parsed.tool_blocks = parsed.tool_blocks or b'"tool_' in raw or b"\\u" in raw
        try:  # fast path for a well-formed message line; anything else takes the careful one
            text = raw.decode("utf-8")
            rec, end = _scan(text, 0)
            if end == len(text) and rec["type"] == "message":
                parsed.messages.append(_message(rec))
                _clear(parsed, suspect)
                continue
        except (ValueError, KeyError, TypeError, IndexError, StopIteration, RecursionError, OverflowError):
            pass
        try:
            rec = _json(raw)
        except ValueError:
            suspect.append((number, start, not raw.strip()))
            continue
        if last.endswith(b"\n") or _keep(Parsed(header_key=None), rec):  # an unterminated last line must be whole
            _clear(parsed, suspect)
            if not _keep(parsed, rec):
                parsed.bad_lines.append(number)
        else:
            suspect.append((number, start, False))
    parsed.size = offset
    if suspect:
        parsed.torn_lines, parsed.truncate_to = len(suspect), suspect[0][1]
    elif not last.endswith(b"\n"):
        parsed.missing_newline = True  # the last line is a whole record, only its newline is missing
    return parsed


def _clear(parsed: Parsed, suspect: list[tuple[int, int, bool]]) -> None:
    """A JSON line came after ``suspect``: they are not the torn tail but bad lines (blank ones are fine)."""
    parsed.bad_lines.extend(number for number, _start, blank in suspect if not blank)
    suspect.clear()


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


def _keep(parsed: Parsed, rec: Any) -> bool:
    """Add one record to ``parsed``; False if it is not a valid one."""
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
