"""The agent service: consumes the bus, runs one turn per message, publishes replies.

Sessions run concurrently, each session's messages strictly in order, at most
``agent.max_concurrent_turns`` turns at once. Every user turn ends with exactly one ``reply`` or
``error`` outbound; progress (streamed text, tool lines, notices) travels separately.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from agent.bus import SUBAGENT, Inbound, MessageBus, Outbound, OutKind
from agent.compaction import Compactor
from agent.config import AgentConfig
from agent.context import render
from agent.errors import ContextOverflow, ProviderError, ReverieError
from agent.journal import DELAYED
from agent.logs import MASK
from agent.loop import Model, run_turn
from agent.tools.registry import ToolContext, ToolRegistry
from agent.types import Block, Message, Request, ToolCall
from agent.usage import UsageLog
from sessions import Session, SessionStore

logger = logging.getLogger(__name__)
RESUMED = f"{DELAYED}reverie restarted while answering this.)"
NOTHING_TO_SEND = "[nothing to send]"  # a scheduled turn's answer when nothing is worth sending now
_MARKER = re.compile(r"\[\s*nothing to send\s*\]", re.IGNORECASE)
HELP = ("Commands: /new starts a fresh conversation (the old one is kept on disk), /usage shows today's "
        "token use and cost, /stop cancels the running answer, /help shows this.")


Item = tuple[Inbound, str | None] | Callable[[Session], object]  # a message (and the turn it resumes), or a change


@dataclass
class Turn:
    msg: Inbound
    session: Session
    turn_id: str
    delayed: bool = False  # resumed after a restart: the reply says so
    shown: bool = False  # some of the answer already reached the user


@dataclass(frozen=True)
class Profile:
    """What a turn runs with: the model, the tools, the system prompt and the step limit."""

    model: Model
    tools: ToolRegistry
    system: Callable[[], str]
    max_steps: int


class AgentService:
    def __init__(self, bus: MessageBus, sessions: SessionStore, profiles: Callable[[Inbound], Profile],
                 tool_ctx: ToolContext, usage: UsageLog, agent: AgentConfig, compactor: Compactor,
                 max_tokens: int = 8192) -> None:
        self.bus, self.sessions, self.profiles, self.tool_ctx = bus, sessions, profiles, tool_ctx
        self.usage, self.agent = usage, agent
        self.compactor, self.max_tokens = compactor, max_tokens
        self._queues: dict[str, asyncio.Queue[Item]] = {}
        self._workers: set[asyncio.Task[None]] = set()
        self._running: dict[str, asyncio.Task[str]] = {}
        self._slots = asyncio.Semaphore(agent.max_concurrent_turns)
        self._child_slots = asyncio.Semaphore(agent.max_subagents)  # children never hold up people's turns
        # Stops what else works for a session (its subagents) on /stop and /new; returns how many.
        self.on_stop: Callable[[str], int] = lambda key: 0

    async def run(self) -> None:
        """Consume the bus until cancelled."""
        while True:
            self.dispatch(await self.bus.inbound.get())

    def dispatch(self, msg: Inbound, resume: str | None = None) -> None:
        """Queue ``msg`` behind its session's earlier messages; ``resume`` continues a turn from a crash."""
        if msg.text.strip().lower() == "/stop" and msg.channel != SUBAGENT:
            stopped, helpers = self.cancel(msg.session_key), self.on_stop(msg.session_key)
            if not stopped:  # a cancelled turn answers "Stopped." itself
                text = f"Stopped {helpers} subagent(s)." if helpers else "Nothing is running."
                self.bus.outbound(msg.channel).put_nowait(reply_to(msg, "", text, "reply"))
            return
        self._queue(msg.session_key).put_nowait((msg, resume))

    def append_later(self, key: str, message: Message) -> None:
        """Add ``message`` to session ``key`` after the turns queued for it (a scheduled message it was sent)."""
        self.later(key, lambda session: session.append(message))

    def later(self, key: str, change: Callable[[Session], object]) -> None:
        """Apply ``change`` to session ``key`` in its queue: after the turns queued before, before the ones
        queued after, never while one of them runs (e.g. a cron run's fresh context)."""
        self._queue(key).put_nowait(change)

    def _queue(self, key: str) -> asyncio.Queue[Item]:
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = asyncio.Queue()
            worker = asyncio.create_task(self._worker(key, queue), name=f"session {key}")
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
        return queue

    def cancel(self, key: str) -> bool:
        task = self._running.get(key)
        if task is None or task.done():
            return False
        task.cancel()
        return True

    async def drain(self, timeout: float) -> None:  # noqa: ASYNC109 (a deadline for the whole drain)
        """Let queued and running turns finish (up to ``timeout`` seconds), then cancel the rest."""
        if self._workers:
            _done, pending = await asyncio.wait(set(self._workers), timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    @property
    def active(self) -> int:
        """Turns running now."""
        return len(self._running)

    async def _worker(self, key: str, queue: asyncio.Queue[Item]) -> None:
        while True:
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                del self._queues[key]
                return
            if callable(item):
                try:
                    item(await asyncio.to_thread(self.sessions.get, key))
                except ReverieError:
                    logger.exception("could not change session %s", key)
                continue
            msg, resume = item
            async with self._child_slots if msg.channel == SUBAGENT else self._slots:
                try:
                    await self.handle(msg, resume)
                except Exception:  # supervision boundary: one bad turn must not stop the session's queue
                    logger.exception("turn for %s failed outside the usual error paths", key)

    async def handle(self, msg: Inbound, resume: str | None = None) -> None:
        turn_id = resume or msg.turn_id or uuid.uuid4().hex[:12]
        try:
            if msg.text.startswith("/") and msg.channel != SUBAGENT and await self._command(msg, turn_id):
                return
            turn = Turn(msg, await asyncio.to_thread(self.sessions.get, msg.session_key), turn_id,
                        delayed=resume is not None)
            for notice in turn.session.notices:
                await self._say(turn, notice, "notice")
            turn.session.notices.clear()
            answered = self._open(turn) if resume else None
            if resume is None or answered is False:
                turn.session.append(user_message(msg))
            elif isinstance(answered, str):  # the answer was ready when reverie stopped: just deliver it
                await self._say(turn, answered, "reply")
                return
        except ReverieError as exc:  # the session could not be read or written: say so, never stay silent
            await self._publish(msg, turn_id, str(exc), "error")
            return
        await self._supervise(turn)

    def _open(self, turn: Turn) -> str | bool:
        """For a resumed turn: False if its message never reached the session, the finished answer if
        there is one, True if the turn must go on from where it stopped."""
        messages, msg = turn.session.messages, turn.msg
        for index in range(len(messages) - 1, -1, -1):
            m = messages[index]
            if m.role == "user" and m.msg_id == msg.message_id and abs(m.time - msg.time) < 0.01:
                own = messages[index + 1:]  # this turn's steps: up to the next message from a person
                end = next((i for i, x in enumerate(own) if x.role == "user" and x.kind in ("chat", "scheduled")
                            and not x.tool_results), len(own))
                last = own[end - 1] if end else None
                if last is not None and last.role == "assistant" and not last.tool_uses:
                    return last.text or "(The model returned an empty answer.)"
                return True
        return False

    async def _supervise(self, turn: Turn) -> None:
        """Run the turn as its own task (so /stop can cancel it) and turn every ending into one message."""
        task = asyncio.create_task(self._turn(turn), name=f"turn {turn.turn_id}")
        self._running[turn.msg.session_key] = task
        try:
            await self._say(turn, await task, "reply")
        except asyncio.CancelledError:
            self._repair(turn, "The user stopped this before it finished.")
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the service itself is stopping
            await self._say(turn, "Stopped.", "error")
        except TimeoutError:
            self._repair(turn, "The turn ran out of time.")
            await self._say(turn, f"This took longer than agent.turn_timeout ({self.agent.turn_timeout:g} s), "
                                  "so I stopped it.", "error")
        except ReverieError as exc:
            self._repair(turn, f"The turn failed: {exc}")
            await self._say(turn, str(exc), "error")
        except Exception:
            incident = uuid.uuid4().hex[:8]
            logger.exception("incident %s: turn %s in %s failed", incident, turn.turn_id, turn.msg.session_key)
            self._repair(turn, "The turn failed with an internal error.")
            await self._say(turn, f"Sorry, something went wrong on my side (incident {incident}; the "
                                  "owner can find it in the log).", "error")
        finally:
            self._running.pop(turn.msg.session_key, None)

    def _repair(self, turn: Turn, reason: str) -> None:
        try:
            turn.session.repair_tail(reason)
        except ReverieError:
            logger.exception("could not repair the end of %s", turn.session.key)

    async def _turn(self, turn: Turn) -> str:
        profile = self.profiles(turn.msg)
        async with asyncio.timeout(self.agent.turn_timeout):
            await self._compact(turn, profile, force=False)
            try:
                return await self._run(turn, profile)
            except ContextOverflow:
                self._repair(turn, "The request was too long for the model.")
                if not await self._compact(turn, profile, force=True):
                    raise
                if turn.shown:  # a retry would show the user the same text twice
                    raise ProviderError(
                        "My answer was cut off: this conversation outgrew the model's context window. I have "
                        "summarised the older messages; please send your message again.") from None
                return await self._run(turn, profile)

    async def _run(self, turn: Turn, profile: Profile) -> str:
        session = turn.session

        def build() -> Request:
            return Request(profile.system(), render(session.active(), session.summary),
                           profile.tools.specs(), self.max_tokens)

        async def on_text(text: str) -> None:
            turn.shown = True
            await self._say(turn, text, "delta")

        async def on_tool(call: ToolCall) -> None:
            await self._say(turn, describe_call(call), "tool")

        ctx = ToolContext(self.tool_ctx.workspace, self.tool_ctx.config, self.tool_ctx.protected, session.key,
                          turn.msg)
        result = await run_turn(profile.model, profile.tools, ctx, session, build, max_steps=profile.max_steps,
                                on_text=on_text, on_tool=on_tool)
        return result.text

    async def _compact(self, turn: Turn, profile: Profile, *, force: bool) -> bool:
        system, tools = profile.system(), profile.tools.specs()
        if not force and not self.compactor.needed(turn.session, system, tools):
            return False
        notice = await self.compactor.compact(turn.session, profile.model,
                                              self.compactor.history_budget(system, tools))
        if notice:
            await self._say(turn, notice, "notice")
        return notice is not None

    async def _command(self, msg: Inbound, turn_id: str) -> bool:
        word = msg.text.strip().split()[0].lower()
        if word == "/new":
            await asyncio.to_thread(self.sessions.reset, msg.session_key)
            helpers = self.on_stop(msg.session_key)  # their reports would land in the new conversation
            text = "Started a new conversation. The previous one is kept on disk." + (
                f" {helpers} subagent(s) still working for it were stopped." if helpers else "")
        elif word == "/help":
            text = HELP
        elif word == "/usage":
            text = usage_text(self.usage)
        else:
            return False
        await self._publish(msg, turn_id, text, "reply")
        return True

    async def _say(self, turn: Turn, text: str, kind: OutKind) -> None:
        if turn.msg.scheduled and kind == "reply":
            reply = scheduled_reply(text)
            text, kind = (reply, kind) if reply is not None else ("", "nothing")
        elif turn.msg.scheduled and kind == "error":
            kind = "failed"  # cron retries it, or tells the chat itself
        elif turn.msg.scheduled and kind == "notice":  # e.g. a compaction: internal to the job
            logger.info("scheduled turn %s: %s", turn.msg.session_key, text)
            return
        if turn.delayed and kind in ("reply", "error"):
            text = f"{RESUMED}\n\n{text}"
        await self._publish(turn.msg, turn.turn_id, text, kind)

    async def _publish(self, msg: Inbound, turn_id: str, text: str, kind: OutKind) -> None:
        await self.bus.publish_outbound(reply_to(msg, turn_id, text, kind))


def user_message(msg: Inbound) -> Message:
    """The stored form of an inbound message: its text, images by path, and where its files were saved."""
    text = msg.text
    if msg.attachments:
        files = "\n".join(f"- {path}" for path in msg.attachments)
        text = f"{text}\n\n[Files the user sent, saved in the workspace:]\n{files}".strip()
    content: list[Block] = [{"type": "text", "text": text}] if text else []
    content += [{"type": "image", "media_type": mimetypes.guess_type(p)[0] or "image/jpeg", "path": p}
                for p in msg.images]
    return Message("user", content or [{"type": "text", "text": "(empty message)"}], msg.time, msg.sender_id,
                   msg.message_id, "scheduled" if msg.scheduled else "chat")


def scheduled_reply(text: str) -> str | None:
    """What a scheduled turn sends: None when the answer is the no-op marker (any case, brackets or not);
    the marker is never sent."""
    if " ".join(re.sub(r"[^\w\s]", " ", text).lower().split()) == "nothing to send":
        return None
    left = _MARKER.sub("", text).strip()
    return left if any(ch.isalnum() for ch in left) else None


def reply_to(msg: Inbound, turn_id: str, text: str, kind: OutKind) -> Outbound:
    """An outbound for ``msg``'s chat; everything but streamed fragments is masked for secrets."""
    return Outbound(msg.channel, msg.chat_id, text if kind == "delta" else MASK(text), kind, msg.thread_id,
                    msg.message_id, turn_id)


def describe_call(call: ToolCall) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in call.arguments.items())
    return f"{call.name}({args[:120] + '…' if len(args) > 120 else args})"


def usage_text(usage: UsageLog) -> str:
    today = usage.today()
    u = today.usage
    cost = f"about ${today.cost:.4f}" + (" (some models have no known price)" if today.unpriced else "")
    day = datetime.now().strftime("%Y-%m-%d")
    return (f"Today ({day}): {today.calls} model calls, {u.input:,} input + {u.output:,} output tokens, "
            f"{u.cache_read:,} read from cache, {u.cache_write:,} written to cache; {cost}.")
