"""Dream: now and then, distil the new parts of every conversation into MEMORY.md.

    dream = Dream(store, workspace / "sessions", workspace / "state" / "dream.json", model,
                  max_facts=200, context_tokens=100_000, max_tokens=8192, allowed=senders, redact=mask)
    result = await dream.run()        # DreamResult: committed, unchanged, nothing, invalid, failed, ...
    await dream.every(3600)           # inside `reverie start`

A run reads what was added to each session file since its cursor (``memory.transcript``), asks the
model for the updated MEMORY.md, one call per chunk that fits the context, checks the answer
(``memory.validate``) and commits it as ``dream: <n> sessions, +a -r``. It starts from the file on
disk, hand edits committed first. If MEMORY.md changes while the model works (a hand edit, a
``remember``), the run starts again from the new version, at most twice, and otherwise gives up:
it never writes over an edit.

No double, no gap: the cursors move only with the commit. Before writing, the run saves its commit
message, the new file's hash and the new cursors as ``pending``; after the commit, the cursors. A
crash in between is settled by the next run (``recover``): if the commit landed, or the new file is
on disk, its cursors are adopted; otherwise the messages are read again.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

from agent.errors import ReverieError
from agent.loop import Model
from agent.types import Message, Request
from memory.cursors import DreamState, load_state, save_state
from memory.store import MemoryStore
from memory.transcript import Allowed, Piece, Redact, chunks, collect, take
from memory.validate import InvalidOutput, changes, check, check_drops

logger = logging.getLogger(__name__)
PROMPT = Path(__file__).with_name("dream.md")
MAX_REDOS = 2  # MEMORY.md changed during the run: start again from the new version this many times
MAX_CALLS = 10  # model calls per run at most: a long backlog is read over several runs
FIRST_DELAY = 60.0  # seconds after start before an overdue run (or one interval, if shorter)
Outcome = Literal["committed", "unchanged", "nothing", "invalid", "failed", "busy", "changed"]


@dataclass
class DreamResult:
    outcome: Outcome
    sessions: int = 0  # sessions with something Dream may learn from
    messages: int = 0  # new messages read, kept or not
    added: int = 0
    removed: int = 0
    calls: int = 0  # model calls
    chars_sent: int = 0
    before: str = ""  # HEAD when the run read MEMORY.md
    sha: str = ""  # the commit, when there is one
    reason: str = ""

    @property
    def tokens_sent(self) -> int:
        return self.chars_sent // 4

    def summary(self) -> str:
        calls = f"{self.calls} model call{'s' if self.calls != 1 else ''}, ~{self.tokens_sent:,} tokens sent"
        if self.outcome == "committed":
            return (f"dream: {self.sessions} sessions, +{self.added} -{self.removed} "
                    f"(commit {self.sha[:7]}; {self.messages} new messages; {calls})")
        if self.outcome == "unchanged":
            return f"dream: nothing worth remembering in {self.messages} new messages ({calls})"
        if self.outcome == "nothing" and self.messages:
            return (f"dream: {self.messages} new messages, none from you or people you allowed (owner, "
                    "allow_from, paired), so nothing to learn from them")
        if self.outcome == "nothing":
            return "dream: nothing new since the last run"
        return f"dream: {self.outcome}, nothing committed: {self.reason}" + (f" ({calls})" if self.calls else "")


class Dream:
    def __init__(self, store: MemoryStore, sessions_dir: Path, state_path: Path, model: Model, *,
                 max_facts: int, context_tokens: int, max_tokens: int, allowed: Allowed, redact: Redact,
                 today: Callable[[], date] = date.today) -> None:
        self.store, self.sessions_dir, self.state_path, self.model = store, sessions_dir, state_path, model
        self.max_facts, self.context_tokens, self.max_tokens = max_facts, context_tokens, max_tokens
        self.allowed, self.redact, self.today = allowed, redact, today
        self.after: Callable[[DreamResult], Awaitable[None]] | None = None  # in ``every``: archive old sessions
        self._lock = asyncio.Lock()

    async def run(self) -> DreamResult:
        """One run; never two at once, in this process or another one on the same workspace."""
        if self._lock.locked():
            return DreamResult("busy", reason="a run is already in progress")
        async with self._lock:
            with _exclusive(self.state_path.with_name("dream.lock")) as mine:
                if not mine:
                    return DreamResult("busy", reason="another reverie process is running Dream on this workspace")
                result = DreamResult("nothing")
                try:
                    return await self._run(result)
                except InvalidOutput as exc:
                    logger.warning("Dream's answer was refused, nothing was committed: %s", exc)
                    result.outcome, result.reason = "invalid", str(exc)
                except ReverieError as exc:
                    logger.warning("Dream failed, nothing was committed: %s", exc)
                    result.outcome, result.reason = "failed", str(exc)
                except Exception as exc:  # a bug or an OS error: logged in full, and the daemon goes on
                    logger.exception("Dream failed, nothing was committed")
                    result.outcome, result.reason = "failed", f"{type(exc).__name__}: {exc}"
                result.sha = ""
                return result

    async def recover(self) -> DreamState:
        """Settle a run a crash interrupted between its commit and its cursors; the current state."""
        return await self.store.locked(self._recover)

    async def every(self, interval: float) -> None:
        """Run every ``interval`` seconds (from the last run, across restarts); back off while failing."""
        try:
            last = (await asyncio.to_thread(load_state, self.state_path)).last_run or 0.0
        except ReverieError:
            last = 0.0  # the run reports the damaged state file
        delay = max(min(FIRST_DELAY, interval), min(last + interval - time.time(), interval))
        failures = 0
        while True:
            await asyncio.sleep(delay)
            result = await self.run()
            logger.info("%s", result.summary())
            if self.after is not None:
                try:
                    await self.after(result)
                except Exception:  # housekeeping must not stop the next runs
                    logger.exception("after a Dream run")
            failures = failures + 1 if result.outcome in ("invalid", "failed", "changed") else 0
            delay = interval * min(2 ** failures, 24)  # a failing model is not asked again every interval

    async def _run(self, result: DreamResult) -> DreamResult:
        state = await self.recover()
        pieces = await asyncio.to_thread(collect, self.sessions_dir, state, self.allowed, self.redact)
        if not pieces:
            return result
        try:
            for _ in range(MAX_REDOS + 1):
                old, head = await self.store.locked(self.store.snapshot)
                result.before = head
                chosen = take(pieces, MAX_CALLS * self._budget(old))  # the rest waits for the next run
                result.sessions = sum(1 for p in chosen if p.lines)
                result.messages = sum(p.messages for p in chosen)
                # New lines but none Dream may learn from: the cursors move on without a model call.
                new = await self._consolidate(old, chosen, result) if result.sessions else old
                result.added, result.removed = changes(old, new)
                message = f"dream: {result.sessions} sessions, +{result.added} -{result.removed}"
                sha = await self.store.locked(self._commit, state, chosen, (old, head), new, message)
                if sha is not None:
                    result.outcome = "committed" if new != old else ("unchanged" if result.sessions else "nothing")
                    result.sha = sha if new != old else ""
                    return result
                logger.info("MEMORY.md changed while Dream was running; starting again from the new version")
            result.outcome, result.reason = "changed", "MEMORY.md kept changing during the run; try again later"
            return result
        finally:
            if result.calls:
                await self.store.locked(self._stamp)

    def _budget(self, old: str) -> int:
        """Characters of conversation per model call: about half the context, less the prompt and memory."""
        return max(8_000, self.context_tokens * 2 - len(PROMPT.read_text(encoding="utf-8")) - len(old))

    async def _consolidate(self, old: str, pieces: list[Piece], result: DreamResult) -> str:
        system = PROMPT.read_text(encoding="utf-8").replace("{max_facts}", str(self.max_facts))
        text, listed = self.redact(old), set[str]()  # a secret written by hand is not sent either
        for chunk in chunks(pieces, self._budget(old)):
            prompt = (f"Today is {self.today().isoformat()}.\n\n<current_memory>\n{text.strip()}\n"
                      f"</current_memory>\n\n<conversations>\n{chunk}\n</conversations>")
            request = Request(system, [Message.user_text(prompt)], [], max_tokens=self.max_tokens)
            result.calls += 1
            result.chars_sent += len(system) + len(prompt)
            completion = await self.model.complete(request, None, session="dream")
            if completion.stop == "max_tokens":
                raise InvalidOutput(f"the answer was cut off at llm.max_tokens ({self.max_tokens}); raise it, "
                                    "or lower memory.dream.max_facts")
            text = check(completion.text, text, max_facts=self.max_facts, today=self.today(), redact=self.redact,
                         listed=listed)
        check_drops(old, text, listed, self.max_facts)  # over the whole run: chunks must not add up
        return text

    # --- under the store's lock, in a thread ---------------------------------------------------------

    def _commit(self, state: DreamState, pieces: list[Piece], base: tuple[str, str], text: str,
                message: str) -> str | None:
        """Commit ``text`` and move the cursors; None (nothing written) when MEMORY.md changed meanwhile."""
        old, head = base
        cursors = {**state.cursors, **{piece.ident: piece.end for piece in pieces}}
        times = {**state.times, **{piece.ident: piece.last_time for piece in pieces}}
        if text == old:
            if self.store.show() != old or self.store.head() != head:
                return None
            state.cursors, state.times = cursors, times
            save_state(self.state_path, state)
            return head
        message = f"{message}\n\nRun {uuid.uuid4().hex[:12]}"
        state.pending = {"base": head, "sha256": _sha256(text), "message": message, "cursors": cursors,
                         "times": times}
        save_state(self.state_path, state)  # first: a crash from here on is settled by _recover
        sha = self.store.replace(text, message, expect=base)  # checks for an edit just before writing
        if sha is not None:
            state.cursors, state.times = cursors, times
        state.pending = None
        save_state(self.state_path, state)
        return sha

    def _recover(self) -> DreamState:
        state = load_state(self.state_path)
        pending = state.pending
        if not pending:
            return state
        try:
            versions = self.store.versions_since(str(pending.get("base", "")))
        except ReverieError:  # the base is gone (the repository was replaced): read the messages again
            versions = []
        landed = any(message == pending.get("message") or _sha256(text) == pending.get("sha256")
                     for message, text in versions)
        if not landed and not versions and _sha256(self.store.show()) == pending.get("sha256"):
            self.store.replace(self.store.show(), str(pending["message"]))  # written, not yet committed
            landed = True
        if landed and isinstance(pending.get("cursors"), dict):
            state.cursors = {str(k): int(v) for k, v in pending["cursors"].items()}
            state.times = {str(k): float(v) for k, v in dict(pending.get("times") or {}).items()}
        logger.warning("Dream was interrupted by a crash during its last commit; %s",
                       "its result was kept" if landed else "its messages will be read again")
        state.pending = None
        save_state(self.state_path, state)
        return state

    def _stamp(self) -> None:
        state = load_state(self.state_path)
        state.last_run = time.time()
        save_state(self.state_path, state)


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[bool]:
    """A non-blocking lock on ``path`` shared with other processes; yields whether it was taken."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
