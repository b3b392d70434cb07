"""Subagents: the agent hands a scoped task to a child agent that works in the background.

    children = Subagents(bus, publish, workspace, cap=4, max_steps=15, state=workspace / "state" / "subagents.json")
    children.register(tools)                 # the `spawn` tool (children never get it: one level only)
    profile = children.profile(msg, main)    # what a child's turn runs with: its tools, model, prompt, steps
    asyncio.create_task(children.run())      # reads the children's replies, reports each to its parent

A child is a turn like any other: its task goes onto the bus as an ``Inbound`` on the ``subagent``
channel, with its own session ``subagent:<id>``. Its tool calls become one-line ``progress`` updates in
the parent's chat; its final answer comes back to the parent's session as a message (through
``publish``: the daemon's gateway, which journals it), and the parent's next turn answers the user.
With a state file, a restart resumes the children that were still working.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent import prompts
from agent.bus import SUBAGENT, Inbound, MessageBus, Outbound
from agent.errors import ToolError
from agent.loop import Model
from agent.service import Profile
from agent.tools.registry import ToolContext, ToolRegistry

logger = logging.getLogger(__name__)
CHANNEL = SUBAGENT
SPAWN = "spawn"
Publish = Callable[[Inbound], Awaitable[Any]]


@dataclass
class Child:
    id: str
    task: str
    tools: list[str] | None  # None: every tool the parent has, except spawn
    max_steps: int
    parent: Inbound  # where the report goes (its text is not kept)
    time: float  # when the task was put on the bus: identifies the task message in the child's session
    steps: int = 0
    stopped: bool = False  # by /stop or /new in the parent's chat: ends without a report

    @property
    def inbound(self) -> Inbound:
        return Inbound(CHANNEL, self.id, CHANNEL, self.task, message_id=self.id, scope=f"{CHANNEL}:{self.id}",
                       turn_id=self.id, time=self.time)


class Subagents:
    def __init__(self, bus: MessageBus, publish: Publish, workspace: Path, *, cap: int, max_steps: int,
                 state: Path | None = None) -> None:
        self.bus, self.publish, self.cap, self.max_steps, self.state = bus, publish, cap, max_steps, state
        self.system = f"{prompts.load('subagent')}\n\nYour workspace folder is {workspace}."
        self.running: dict[str, Child] = {}
        self.spawned: Counter[str] = Counter()  # children started, by parent session (for `reverie chat -m`)
        self._tools: ToolRegistry | None = None
        self.cancel: Callable[[str], bool] = lambda key: False  # the service's: cancels a session's running turn

    def register(self, tools: ToolRegistry) -> None:
        """Add the ``spawn`` tool to the main agent's registry."""
        self._tools = tools
        tools.register(self.spawn, name=SPAWN)

    def profile(self, msg: Inbound, main: Profile, model: Model | None = None) -> Profile:
        """The profile for a child's turn: its chosen tools (never spawn), its own step limit and prompt."""
        child = self.running.get(msg.chat_id)
        tools = main.tools.subset(child.tools if child else [], exclude=(SPAWN,))
        return Profile(model or main.model, tools, lambda: self.system, child.max_steps if child else 1)

    async def spawn(self, ctx: ToolContext, task: str, tools: list[str] | None = None,
                    max_steps: int | None = None) -> str:
        """Hand a self-contained task to a subagent that works on it in the background with a fresh context.

        Use it for long work that does not need the user (research over many pages, a batch of files).
        The subagent sees only the task text, so include everything it needs. Its report arrives later in
        this conversation as a message; tell the user you started it and do not wait for it.

        Args:
            task: The complete task: what to do, what to report back, and any facts it needs.
            tools: Names of the tools the subagent may use (default: all of yours except spawn).
            max_steps: The most model calls it may make (default and maximum: agent.subagent_max_steps).
        """
        parent = ctx.inbound
        if parent is None or parent.channel == CHANNEL or ctx.session_key.startswith(f"{CHANNEL}:"):
            raise ToolError("A subagent cannot start subagents of its own; do this part of the work yourself.")
        same = [c for c in self.running.values()
                if c.task == task.strip() and c.parent.session_key == parent.session_key and not c.stopped]
        if same:  # e.g. the call is made again after a restart interrupted the first one's step
            return (f"Subagent {same[0].id} is already working on exactly this task; its report will arrive in "
                    "this conversation. Do not start it again.")
        if len(self.running) >= self.cap:
            raise ToolError(f"{self.cap} subagents are already running (the limit, agent.max_subagents). Wait "
                            "for one to report, or do this yourself.")
        if not task.strip():
            raise ToolError("The task is empty. Describe what the subagent should do and report.")
        if tools is not None and self._tools is not None:
            self._tools.subset(tools, exclude=(SPAWN,))  # raises ToolError naming an unknown tool
            if SPAWN in tools:
                raise ToolError("A subagent cannot have the spawn tool; leave it out of the list.")
        steps = min(max_steps or self.max_steps, self.max_steps)
        if steps < 1:
            raise ToolError("max_steps must be at least 1.")
        child = Child(uuid.uuid4().hex[:8], task.strip(), tools, steps, _bare(parent), time.time())
        try:
            self._save({**self.running, child.id: child})  # recorded before it exists: a restart resumes it
        except OSError as exc:
            raise ToolError(f"Could not record the subagent ({exc.strerror or exc}); it was not started.") from exc
        self.running[child.id] = child
        self.spawned[parent.session_key] += 1
        await self.bus.publish_inbound(child.inbound)
        logger.info("subagent %s started for %s (%d steps at most)", child.id, parent.session_key, steps)
        return (f"Started subagent {child.id}. It works in the background; its report will arrive in this "
                "conversation as a message. Tell the user what you started; do not wait for it.")

    async def run(self) -> None:
        """Read the children's outbound until cancelled: progress to the parent's chat, reports to its session."""
        queue = self.bus.outbound(CHANNEL)
        while True:
            out = await queue.get()
            child = self.running.get(out.chat_id)
            if child is None:
                continue
            try:
                if out.kind == "tool":
                    child.steps += 1
                    await self._progress(child, f"step {child.steps}: {out.text}")
                elif out.kind in ("reply", "error") and child.stopped:
                    await self._progress(child, "stopped")
                    self._forget(child)
                    self.spawned[child.parent.session_key] -= 1  # no report will come
                elif out.kind in ("reply", "error"):
                    await self._report(child, out)
            except Exception:  # supervision boundary: one child's report must not stop the others'
                logger.exception("could not report subagent %s", child.id)

    def resume(self, dispatch: Callable[[Inbound, str | None], None]) -> int:
        """Children a restart interrupted go on from where they stopped (the service's resume path)."""
        for child in self._load():
            self.running[child.id] = child
            dispatch(child.inbound, child.id)
        return len(self.running)

    def stop(self, session_key: str | None = None) -> int:
        """Stop the children working for this parent session (all, when None); they end without a report."""
        children = [self.running[c] for c in self.active(session_key)]
        for child in children:
            child.stopped = True
            self.cancel(f"{CHANNEL}:{child.id}")
        return len(children)

    def active(self, session_key: str | None = None) -> list[str]:
        """Ids of the children working (for this parent session, when given)."""
        return [c.id for c in self.running.values() if session_key in (None, c.parent.session_key)]

    async def _report(self, child: Child, out: Outbound) -> None:
        text = out.text.strip() or "(The subagent returned an empty answer.)"
        head = (f"[Report from subagent {child.id}, which you started for the task: {_quote(child.task)}. It is "
                "your helper's work, not a message from the user; use it to answer the user now.]"
                if out.kind == "reply" else
                f"[Subagent {child.id} could not finish the task {_quote(child.task)}. Tell the user, or do the "
                "task yourself.]")
        parent = child.parent
        await self.publish(dataclasses.replace(parent, sender_id=f"{CHANNEL}:{child.id}", text=f"{head}\n\n{text}",
                                               message_id=f"{CHANNEL}-{child.id}", is_owner=False, turn_id=None,
                                               time=time.time()))
        await self._progress(child, "done" if out.kind == "reply" else "failed")
        self._forget(child)

    def _forget(self, child: Child) -> None:
        self.running.pop(child.id, None)
        self._save(self.running)

    async def _progress(self, child: Child, text: str) -> None:
        parent = child.parent
        line = f"subagent {child.id} ({_quote(child.task, 40)}): {text}"
        await self.bus.publish_outbound(Outbound(parent.channel, parent.chat_id, line, "progress",
                                                 parent.thread_id, None, child.id))

    def _save(self, running: dict[str, Child]) -> None:
        if self.state is None:
            return
        data = {c.id: {**dataclasses.asdict(c), "parent": dataclasses.asdict(c.parent)} for c in running.values()}
        tmp = self.state.with_suffix(".tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, self.state)

    def _load(self) -> list[Child]:
        if self.state is None or not self.state.exists():
            return []
        try:
            data = json.loads(self.state.read_text(encoding="utf-8"))
            return [Child(**{**item, "parent": Inbound(**item["parent"])}) for item in data.values()]
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            logger.exception("the list of running subagents in %s is unreadable; none resumed", self.state)
            return []


def _bare(msg: Inbound) -> Inbound:
    """Where to report, without the parent message's content."""
    return Inbound(msg.channel, msg.chat_id, msg.sender_id, "", thread_id=msg.thread_id, is_owner=msg.is_owner,
                   scope=msg.scope)


def _quote(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return f'"{line if len(line) <= limit else line[: limit - 1] + "…"}"'

