"""``reverie sessions list | show KEY | archive [--days N]``.

    reverie sessions list                   # every conversation: messages, last activity, size, state
    reverie sessions show telegram:12345    # the live one, else the newest reset or archived one
    reverie sessions archive --days 60      # gzip old conversations Dream has read into sessions/archive/

States: ``live`` (``<key>.jsonl``, the conversation the agent continues), ``reset <stamp>`` (what
``/new`` set aside) and ``archived`` (``archive/*.gz``, see ``sessions.archive``). Everything printed
from a session is passed through ``skills.skill.escape``: chat platforms deliver any character,
terminal escape sequences included. It is masked first (``agent.logs.Masker``: the configured
secrets, credential-like environment variables, and anything shaped like an API key).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from agent.chat import load_from_args
from agent.errors import ConfigError, MemoryStoreError, SessionError
from agent.lock import AlreadyRunning, WorkspaceLock
from agent.logs import Masker, env_secrets
from agent.types import Block, Message, result_text
from memory.cursors import DreamState, is_consolidated, load_state
from sessions.archive import ARCHIVE, archive_sessions, archived_key, old_sessions, read_archived
from sessions.reader import Parsed, Unreadable, read_header_key, read_session
from sessions.store import encode_key
from skills.skill import escape

Mask = Callable[[str], str]
_RESET = re.compile(r"\.(\d{8}T\d{6})(?:-\d+)?$")
_TAKEN = re.compile(r"-\d+$")  # ``-2``, ``-3``, ...: an archive whose name was already taken
SHORT = 200  # tool calls and results are cut to one line of this many characters


@dataclass
class Entry:
    path: Path
    key: str
    state: str  # "live" | "reset <stamp>" | "archived"
    mtime: float
    size: int
    messages: int | None  # None when the file cannot be read


def run_sessions(args: argparse.Namespace) -> int:
    _check_args(args)
    config, _ = load_from_args(args, need_model=False)
    workspace = config.workspace_path
    root = workspace / "sessions"
    dream = config.memory.dream.enabled
    mask: Mask = Masker(config.secrets() | env_secrets())  # a session holds whatever was pasted into it
    if args.action == "list":
        return list_sessions(root, _list_state(workspace) if dream else None, mask)
    if args.action == "show":
        return show_session(root, args.key, mask)
    days = args.days if args.days is not None else config.sessions.archive_after_days
    return archive_now(workspace, days, dream=dream)


def _check_args(args: argparse.Namespace) -> None:
    """KEY only with ``show`` (and there it is needed); ``--days`` only with ``archive``, 0 or more."""
    if args.action == "show" and not args.key:
        raise ConfigError("Say which conversation: reverie sessions show KEY. `reverie sessions list` shows them.")
    if args.action != "show" and args.key:
        raise ConfigError(f"`reverie sessions {args.action}` takes no KEY (got {escape(repr(args.key))}).")
    if args.days is None:
        return
    if args.action != "archive":
        raise ConfigError(f"--days goes with `reverie sessions archive`, not `{args.action}`.")
    if not math.isfinite(args.days) or args.days < 0:
        raise ConfigError(f"--days needs a number of days, 0 or more (0 turns archiving off); got {args.days:g}.")


# --- list --------------------------------------------------------------------------------------------

def list_sessions(root: Path, state: DreamState | None, mask: Mask = str) -> int:
    """Print every conversation, newest first; ``state`` adds whether Dream has read each one."""
    entries = all_entries(root)
    if not entries:
        print("No conversations yet.")
        return 0
    head = ["KEY", "MESSAGES", "LAST ACTIVITY", "SIZE", "STATE"] + (["DREAM"] if state is not None else [])
    rows = [head]
    for e in entries:
        row = [escape(mask(e.key)), "?" if e.messages is None else str(e.messages), when(e.mtime), size_text(e.size),
               e.state + (", unreadable" if e.messages is None else "")]
        if state is not None:
            done = e.state == "archived" or is_consolidated(e.path, state)
            row.append("consolidated" if done else "not yet")
        rows.append(row)
    print(f"{len(entries)} conversation{'s' if len(entries) != 1 else ''} in {root}, newest first:")
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    for row in rows:
        cells = [cell.rjust(w) if i in (1, 3) and row is not head else cell.ljust(w)
                 for i, (cell, w) in enumerate(zip(row, widths, strict=True))]
        print("  " + "  ".join(cells).rstrip())
    return 0


def _list_state(workspace: Path) -> DreamState | None:
    try:
        return load_state(workspace / "state" / "dream.json")
    except MemoryStoreError as exc:
        print(f"(Not showing what Dream has read: {exc})", file=sys.stderr)
        return None


def all_entries(root: Path) -> list[Entry]:
    """Live and reset session files in ``root`` and archived ones in ``root/archive``, newest first."""
    found = [_entry(p, archived=False) for p in _glob(root, "*.jsonl")]
    found += [_entry(p, archived=True) for p in _glob(root / ARCHIVE, "*.gz")]
    return sorted((e for e in found if e is not None), key=lambda e: e.mtime, reverse=True)


def _entry(path: Path, *, archived: bool) -> Entry | None:
    try:
        info = path.stat()
    except OSError:
        return None
    messages: int | None
    try:
        parsed = read_archived(path) if archived else read_session(path)
        key, messages = (parsed.header_key, len(parsed.messages)) if parsed else (None, 0)
    except (Unreadable, OSError):
        key, messages = None, None
    state = "archived" if archived else _state(path, key)
    return Entry(path, key or _name_key(path), state, info.st_mtime, info.st_size, messages)


def _state(path: Path, key: str | None) -> str:
    stem = path.name.removesuffix(".jsonl")
    if key is not None and encode_key(key) == stem:
        return "live"
    match = _RESET.search(stem)
    return f"reset {match.group(1)}" if match else "live"


def _name_key(path: Path) -> str:
    """For a file without a readable header: the key its name encodes, as well as it can tell.

    An archive's ``-N`` (its name was taken) is dropped too, like the ``.<stamp>`` of a reset file.
    """
    stem = path.name.removesuffix(".gz").removesuffix(".jsonl")
    stem = _RESET.sub("", _TAKEN.sub("", stem) if path.name.endswith(".gz") else stem)
    return unquote(stem, errors="replace")


def _glob(folder: Path, pattern: str) -> list[Path]:
    try:
        return [p for p in folder.glob(pattern) if p.is_file()]
    except OSError:
        return []


def size_text(size: int) -> str:
    """``812 B``, ``3.4 KB``, ``1.2 MB``."""
    if size < 1024:
        return f"{size} B"
    value, unit = size / 1024, "KB"
    for bigger in ("MB", "GB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f} {unit}"


def when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


# --- show --------------------------------------------------------------------------------------------

def show_session(root: Path, key: str, mask: Mask = str) -> int:
    """Print the live conversation for ``key``, else the newest reset or archived one."""
    live = root / f"{encode_key(key)}.jsonl"
    if live.is_file():
        path, state = live, "live"
    else:
        earlier = _earlier(root, key)
        if not earlier:
            raise ConfigError(f"No conversation with the key {escape(repr(key))}. "
                              "`reverie sessions list` shows them.")
        path, state = earlier[0].path, earlier[0].state
    parsed = _parse(path, archived=state == "archived")
    count = len(parsed.messages) if parsed else 0
    lead = (f"Conversation {key} ({state})" if state == "live"
            else f"No live conversation for {key}; showing the newest earlier one ({state})")
    print(escape(mask(f"{lead}, {count} message{'s' if count != 1 else ''}.\nFile: {path}\n")))
    names: dict[str, str] = {}
    for message in parsed.messages if parsed else []:
        print(escape(render(message, names, mask)))
    return 0


def _earlier(root: Path, key: str) -> list[Entry]:
    """Reset and archived files of ``key``, newest first (names are checked first, then headers).

    A file whose header cannot be read counts when its name decodes to ``key``, as ``list`` shows it.
    """
    stem = encode_key(key)
    found = []
    for path in _glob(root, f"{stem}.*.jsonl"):
        if _belongs(read_header_key(path), path, key):
            found.append(_entry(path, archived=False))
    for path in _glob(root / ARCHIVE, f"{stem}*.gz"):
        if _belongs(archived_key(path), path, key):
            found.append(_entry(path, archived=True))
    return sorted((e for e in found if e is not None), key=lambda e: e.mtime, reverse=True)


def _belongs(header: str | None, path: Path, key: str) -> bool:
    if header is not None:
        return header == key
    stem = _RESET.sub("", path.name.removesuffix(".gz").removesuffix(".jsonl"))
    return key in (_name_key(path), unquote(stem, errors="replace"))  # the key itself may end in -N


def _parse(path: Path, *, archived: bool) -> Parsed | None:
    try:
        return read_archived(path) if archived else read_session(path)
    except Unreadable as exc:
        raise SessionError(f"The session file {path} cannot be read: {exc}.") from None
    except OSError as exc:
        raise SessionError(f"Could not read the session file {path}: {exc.strerror or exc}. "
                           "Check its permissions.") from exc


def render(message: Message, names: dict[str, str], mask: Mask = str) -> str:
    """``[YYYY-MM-DD HH:MM] role (sender): text``; tool calls and results one short line each.

    ``names`` maps tool call ids to tool names, so a result can say which tool it answers. ``mask``
    hides secrets, before anything is cut short (so no partial secret is left).
    """
    who = mask(message.role + (f" ({message.sender})" if message.sender else ""))
    who += f" [{message.kind}]" if message.kind != "chat" else ""
    parts = [_block(block, names, mask) for block in message.content]
    body = "\n".join(part for part in parts if part).replace("\n", "\n  ")
    return f"[{when(message.time)}] {who}: {body}"


def _block(block: Block, names: dict[str, str], mask: Mask) -> str:
    kind = block.get("type")
    if kind == "text":
        return mask(str(block.get("text", "")))
    if kind == "image":
        return "[image]"
    if kind == "tool_use":
        name = str(block.get("name", "?"))
        names[str(block.get("id"))] = name
        return shorten(mask(f"→ {name}({json.dumps(block.get('input', {}), ensure_ascii=False)})"))
    if kind == "tool_result":
        name = names.get(str(block.get("tool_use_id")), "tool")
        verb = "failed" if block.get("is_error") else "returned"
        return shorten(mask(f"← {name} {verb}: {result_text(block.get('content', ''))}"))
    return f"[{kind}]"


def shorten(text: str, limit: int = SHORT) -> str:
    """``text`` on one line (runs of whitespace become one space), cut to ``limit`` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit - 1] + "…"


# --- archive -----------------------------------------------------------------------------------------

def archive_now(workspace: Path, days: float, *, dream: bool) -> int:
    """Archive the conversations idle for ``days`` that Dream has read (all of them without Dream).

    Holds the workspace lock throughout, so the daemon cannot start meanwhile; refused while it runs.
    """
    if days <= 0:
        print(f"Archiving is off ({days:g} days): nothing was archived.")
        return 0
    with _holding(workspace, dream=dream):
        return _archive(workspace, days, dream=dream)


@contextlib.contextmanager
def _holding(workspace: Path, *, dream: bool) -> Iterator[None]:
    if not workspace.is_dir():  # no workspace: nothing runs there, and there is nothing to archive
        yield
        return
    lock = WorkspaceLock(workspace)
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        who = f" (pid {exc.pid})" if exc.pid else ""
        itself = (", and it archives old conversations itself after each Dream run" if dream
                  else "; with Dream disabled it does not archive on its own")
        raise SessionError(f"reverie is running for {workspace}{who}{itself}. Stop it first to archive by hand: "
                           "a live conversation archived under a running daemon would be written to again.") from None
    except OSError as exc:
        raise SessionError(f"Could not lock {lock.path}: {exc.strerror or exc}. Check its permissions.") from exc
    try:
        yield
    finally:
        lock.release()


def _archive(workspace: Path, days: float, *, dream: bool) -> int:
    root = workspace / "sessions"
    state = load_state(workspace / "state" / "dream.json") if dream else None

    def consolidated(path: Path) -> bool:
        return state is None or is_consolidated(path, state)

    now = time.time()
    archived = archive_sessions(root, days, consolidated, now=now)
    waiting = len(old_sessions(root, days, now=now)) if dream else 0
    for path in archived:
        print(f"  {escape(archived_key(path) or path.name)} -> {ARCHIVE}/{escape(path.name)}")
    if archived:
        total = sum(p.stat().st_size for p in archived)
        print(f"Archived {len(archived)} conversation{'s' if len(archived) != 1 else ''} "
              f"({size_text(total)}) into {root / ARCHIVE}.")
    elif dream:
        print(f"Nothing to archive: no session is both older than {days:g} days and fully consolidated by Dream.")
    else:
        print(f"Nothing to archive: no session is older than {days:g} days.")
    if waiting:
        print(f"{waiting} old session{'s wait' if waiting != 1 else ' waits'} for Dream to read "
              f"{'them' if waiting != 1 else 'it'} first (reverie dream).")
    return 0
