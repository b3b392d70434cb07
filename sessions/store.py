"""Session files under ``<workspace>/sessions/``: one append-only JSONL file per session key.

    store = SessionStore(workspace / "sessions")
    session = store.get("telegram:123")     # loaded once, then cached
    session.append(Message.user_text("hi"))
    store.reset("telegram:123")             # /new: the old file is renamed, never deleted

File format (``telegram%3A123.jsonl``; every character outside ``[A-Za-z0-9_.-]`` of the key becomes
``%XX`` per UTF-8 byte, so names map back to keys)::

    {"type":"header","version":1,"key":"telegram:123","created":1767225600.0}
    {"type":"message","role":"user","content":[...],"time":...}          # Message.to_json()
    {"type":"compaction","summary":"...","upto":40,"time":...}           # messages[:40] -> summary
                                                            # (counted over every message a load yields)

Loading never raises for a damaged file (details in ``sessions.reader``): a torn tail is cut off
(WARNING only: it is what a crash leaves), other bad lines are skipped (WARNING and a notice), tool
calls are re-paired (``sessions.repair``; an unanswered call at the end is answered in the file), and
a file without a readable header is renamed to ``<name>.corrupt-<YYYYmmddTHHMMSS>`` and replaced by a
fresh session (with a notice). SessionError is raised only when the operating system refuses a read
or a write. Loading is O(history), so it happens once per key; callers on an event loop may run
``get`` in a thread (it is locked). Appends are O(1) and may run on the loop.

Durability: there is no fsync. A crash of reverie itself loses nothing that was written, because the
data is already in the OS page cache; only a power cut or kernel crash can lose the last lines, and
the torn-line repair above handles what that leaves. Each key must have a single writer (one process).
Files are created 0o600 and the directory 0o700.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote

from agent.errors import SessionError
from sessions.reader import Parsed, Unreadable, read_header_key, read_session
from sessions.repair import INTERRUPTED, repair_pairing
from sessions.session import PER_MESSAGE, Session

__all__ = ["Session", "SessionStore"]

logger = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_MAX_NAME = 160  # leaves room for ".<stamp>-N.jsonl" / ".corrupt-<stamp>" under the usual 255-byte limit
_ARCHIVED = re.compile(r"\.\d{8}T\d{6}(-\d+)?$")


def encode_key(key: str) -> str:
    """The file stem for ``key``: ``terminal:default`` -> ``terminal%3Adefault``.

    Keys too long for a file name keep a readable prefix plus a hash after ``~`` (a character the
    encoding itself never produces); their key is then read back from the header.
    """
    if not key:
        raise ValueError("a session key must not be empty")
    name = _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode("utf-8", "surrogatepass")), key)
    if len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{name[:_MAX_NAME - 17]}~{digest}"


class SessionStore:
    def __init__(self, root: Path, mask: Callable[[str], str] | None = None, cached: int = 128,
                 memory: int = 4_000_000) -> None:
        self.root = root
        self.mask = mask  # applied to every string written (agent.logs.Masker: configured secrets)
        # The most recently used sessions stay in memory, at most ``cached`` of them and about ``memory``
        # bytes (Session.size; the one in use always stays). An older one is read again from its file when
        # its chat comes back (the file is complete: every append is written at once). So memory stays
        # bounded however many chats a long-running daemon has seen, and however long they grow.
        self.cached, self.memory = cached, memory
        self._cache: dict[str, Session] = {}
        self._lock = threading.Lock()  # get() may run in worker threads; load each key once

    def path_for(self, key: str) -> Path:
        return self.root / f"{encode_key(key)}.jsonl"

    def get(self, key: str) -> Session:
        """The session for ``key``; its file is created (header first) on the first append."""
        with self._lock:
            session = self._cache.pop(key, None)  # re-inserted last: the dict's order is the recency
            if session is None:
                session = self._load(key)
            self._cache[key] = session
            self._trim()
            return session

    def loaded(self) -> list[str]:
        """The keys of the sessions held in memory, least recently used first."""
        with self._lock:
            return list(self._cache)

    def _trim(self) -> None:
        """Let the least recently used sessions go until the cache is within its bounds. The one just
        taken stays, and so does one with notices not yet shown (a reload would not repeat them)."""
        total = sum(s.size for s in self._cache.values())
        spare = [key for key, s in list(self._cache.items())[:-1] if not s.notices]
        while spare and (len(self._cache) > self.cached or total > self.memory):
            total -= self._cache.pop(spare.pop(0)).size

    def reset(self, key: str) -> Session:
        """Start over (/new): rename the current file to ``<name>.<YYYYmmddTHHMMSS>.jsonl``."""
        with self._lock:
            path = self.path_for(key)
            archive = _free_name(path, "." + _stamp(), ".jsonl")
            _rename(path, archive, missing_ok=True)
            old = self._cache.pop(key, None)
            if old is not None:  # a turn still holding it keeps writing to the old conversation
                old.path = archive
            session = self._cache[key] = Session(key, path, mask=self.mask)
            return session

    def forget(self, key: str) -> None:
        """Drop ``key`` from the cache (its file was archived); the next ``get`` reads the disk again."""
        with self._lock:
            self._cache.pop(key, None)

    def keys(self) -> list[str]:
        """Keys of live sessions that have a file (not reset or quarantined ones), sorted."""
        try:
            paths = sorted(self.root.glob("*.jsonl"))
        except OSError:
            return []
        keys = []
        for path in paths:
            key = read_header_key(path) or _key_from_name(path)
            if key and self.path_for(key) == path:
                keys.append(key)
        return keys

    def _load(self, key: str) -> Session:
        session = Session(key, self.path_for(key), mask=self.mask)
        try:
            with _gc_paused():
                parsed = read_session(session.path)
                if parsed is not None:
                    _fix_tail(session.path, parsed)
                    _fill(session, parsed)
        except Unreadable as exc:
            self._quarantine(session, str(exc))
        except OSError as exc:
            raise SessionError(f"Could not read the session file {session.path}: {exc.strerror or exc}. "
                               "Check its permissions.") from exc
        return session

    def _quarantine(self, session: Session, reason: str) -> None:
        aside = _free_name(session.path, ".corrupt-" + _stamp(), "")
        _rename(session.path, aside)
        logger.warning("Session file %s is unreadable (%s); moved it to %s", session.path, reason, aside.name)
        session.notices.append(f"Your previous conversation file could not be read; it was saved as "
                               f"{aside.name} and a new conversation was started.")


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Loading only creates objects that stay alive, so collector passes over them are wasted work
    (a quarter of a 10,000-message load in a busy process)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _fill(session: Session, parsed: Parsed) -> None:
    """Move what was read into ``session``: repaired messages, the latest compaction, notices."""
    if parsed.header_key not in (None, session.key):
        logger.warning("Session file %s names key %r; loading it as %r", session.path, parsed.header_key,
                       session.key)
    for number in parsed.bad_lines[:10]:
        logger.warning("Skipped unreadable line %d of session file %s", number, session.path)
    if len(parsed.bad_lines) > 10:
        logger.warning("... and %d more unreadable lines in %s", len(parsed.bad_lines) - 10, session.path)
    if parsed.bad_lines:
        count = len(parsed.bad_lines)
        session.notices.append(
            f"{count} line{'s' if count > 1 else ''} of your conversation history could not be read and "
            f"{'were' if count > 1 else 'was'} skipped (the file {session.path.name} still contains "
            f"{'them' if count > 1 else 'it'}).")
    session.messages, changes = repair_pairing(parsed.messages) if parsed.tool_blocks else (parsed.messages, 0)
    session.size = parsed.size + PER_MESSAGE * len(session.messages)
    if changes:
        logger.warning("Re-paired %d tool call block(s) in %s", changes, session.path)
    if session.repair_tail(INTERRUPTED):
        logger.warning("Answered the interrupted tool call(s) at the end of %s", session.path)
        session.notices.append("Your last request was interrupted while a tool was running (reverie "
                               "restarted); the unfinished tool call was marked as failed.")
    if parsed.compaction is not None:  # clamped after the tail repair, so the next load agrees
        summary, upto = parsed.compaction
        if upto > len(session.messages):  # it covered lines that are gone: record the clamp, or the
            session.compact(summary, len(session.messages))  # next messages would vanish into it
        else:  # what the summary stands for is not kept in memory
            session.drop(upto, summary)


def _fix_tail(path: Path, parsed: Parsed) -> None:
    """Make the file end on a clean line so the next append starts one."""
    try:
        if parsed.truncate_to is not None:
            logger.warning("Dropped %d torn line(s) at the end of session file %s (an interrupted write)",
                           parsed.torn_lines, path)
            os.truncate(path, parsed.truncate_to)
        elif parsed.missing_newline:
            with path.open("ab") as fh:
                fh.write(b"\n")
    except OSError as exc:
        raise SessionError(f"Could not repair the end of the session file {path}: {exc.strerror or exc}. "
                           "Check that it is writable and the disk is not full.") from exc


def _key_from_name(path: Path) -> str | None:
    """For a file whose header cannot be read (it is quarantined on load): the key its name encodes."""
    stem = path.name.removesuffix(".jsonl")
    if _ARCHIVED.search(stem) or "~" in stem:
        return None
    try:
        return unquote(stem, errors="strict")
    except UnicodeDecodeError:
        return None


def _stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%S")


def _free_name(path: Path, suffix: str, ext: str) -> Path:
    """``<name><suffix><ext>`` next to ``path`` (``<name>.jsonl``), with ``-2``, ``-3``, ... if taken."""
    stem, n = path.name.removesuffix(".jsonl"), 1
    candidate = path.with_name(f"{stem}{suffix}{ext}")
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{stem}{suffix}-{n}{ext}")
    return candidate


def _rename(src: Path, dst: Path, *, missing_ok: bool = False) -> None:
    try:
        src.rename(dst)
    except FileNotFoundError:
        if not missing_ok:
            raise SessionError(f"The session file {src} disappeared while it was being moved aside.") from None
    except OSError as exc:
        raise SessionError(f"Could not rename the session file {src} to {dst.name}: {exc.strerror or exc}. "
                           "Check the permissions of its folder.") from exc
