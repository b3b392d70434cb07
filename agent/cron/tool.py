"""The ``cron`` tool: the model schedules, lists and cancels jobs for the chat it is talking in.

    register(JobStore(workspace, config.cron_jobs), registry, config)

A job added here is stored in ``<workspace>/cron/jobs.yaml`` (source ``chat``) and delivers to the chat
it was created in; a running daemon picks it up within seconds. Someone who is not the owner sees and
cancels only the jobs of their own chat.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from typing import Literal

from agent.config import Config, CronJob, DeliverTo
from agent.cron.expr import describe, next_fire, trigger_for, zone
from agent.cron.jobs import Job, JobStore, default_target
from agent.cron.runs import RunLog
from agent.errors import ReverieError, ToolError
from agent.tools.registry import ToolContext, ToolRegistry

Action = Literal["add", "list", "remove"]


def register(store: JobStore, registry: ToolRegistry, config: Config) -> None:
    runs = RunLog(config.workspace_path / "cron")

    async def cron(ctx: ToolContext, action: Action, message: str | None = None, cron: str | None = None,
                   every: float | None = None, at: str | None = None, timezone: str | None = None,
                   name: str | None = None) -> str:
        """Schedule a message to yourself for later (a reminder, a recurring briefing), list this chat's
        jobs, or cancel one. When a job runs, its message comes back to you in this chat, and your answer
        is sent to the person. Give exactly one of cron, every or at when adding.

        Args:
            action: "add", "list" or "remove".
            message: add: the instruction for your future self, e.g. "Remind the owner to call mom."
            cron: add: a standard 5-field crontab (minute hour day-of-month month day-of-week; 0 and 7
                are Sunday), e.g. "0 8 * * 1-5" for weekdays at 08:00.
            every: add: repeat every this many seconds, e.g. 2700.
            at: add: once, at this local date and time, e.g. "2026-11-22T17:00:00".
            timezone: add: the person's IANA time zone, e.g. "Europe/Paris" (default: the server's).
            name: add: a short name (made up when missing); remove: the job's name, from list.
        """
        target = _target(ctx, config)
        if action == "list":
            return _list(store, runs, target, ctx)
        if action == "remove":
            return _remove(store, target, ctx, name)
        _limits(store, target, ctx, every)
        return _add(store, target, message, cron, every, at, timezone, name)

    registry.register(cron)


MAX_JOBS_PER_CHAT = 10  # for people other than the owner
MIN_EVERY = 60.0  # seconds; 300 for people other than the owner


def _target(ctx: ToolContext, config: Config) -> DeliverTo:
    msg = ctx.inbound
    if msg is not None and msg.channel not in ("terminal", "subagent"):
        # A scheduled turn (a job running) acts for the job's own chat, never for the owner's.
        return DeliverTo(channel=msg.channel, chat=msg.chat_id, thread=msg.thread_id,
                         session=None if msg.scheduled else msg.scope)
    target = default_target(config)
    if target is None:
        raise ToolError("There is no chat to deliver scheduled messages to: the owner needs a channel and "
                        "owner.<platform> in the config (scheduled messages cannot go to the terminal).")
    return target


def _owner(ctx: ToolContext) -> bool:
    return ctx.inbound is None or ctx.inbound.is_owner or ctx.inbound.channel == "terminal"


def _mine(job: Job, target: DeliverTo, ctx: ToolContext) -> bool:
    return _owner(ctx) or _here(job, target)


def _here(job: Job, target: DeliverTo) -> bool:
    """The job delivers to ``target``'s chat (whoever in it asked for it)."""
    return job.spec.deliver_to is not None and job.spec.deliver_to.place == target.place


def _limits(store: JobStore, target: DeliverTo, ctx: ToolContext, every: float | None) -> None:
    """Someone other than the owner cannot make the agent work every few seconds on their behalf."""
    owner = _owner(ctx)
    least = MIN_EVERY if owner else 300.0
    if every is not None and every < least:
        raise ToolError(f"every must be at least {least:.0f} seconds.")
    if not owner and sum(1 for job in store.load().values() if _here(job, target)) >= MAX_JOBS_PER_CHAT:
        raise ToolError(f"This chat already has {MAX_JOBS_PER_CHAT} scheduled jobs; remove one first.")


def _add(store: JobStore, target: DeliverTo, message: str | None, cron: str | None, every: float | None,
         at: str | None, timezone: str | None, name: str | None) -> str:
    if not message or not message.strip():
        raise ToolError("add needs a message: the instruction for your future self.")
    if sum(x is not None for x in (cron, every, at)) != 1:
        raise ToolError("add needs exactly one of cron, every or at.")
    name = (name or "").strip() or f"{_slug(message)}-{secrets.token_hex(2)}"
    try:
        spec = CronJob(name=name, message=message.strip(), schedule=cron, every=every, at=at, timezone=timezone,
                       deliver_to=target)
        job = store.add(spec, source="chat")
        now = datetime.now(zone(spec.timezone))
        upcoming = next_fire(trigger_for(spec, now), now)
    except (ReverieError, ValueError) as exc:
        raise ToolError(str(exc).replace("--cron", "cron").replace("--at", "at")) from None
    when = f"{upcoming:%Y-%m-%d %H:%M %Z}" if upcoming else "never (that time has passed)"
    return f"Scheduled \"{job.spec.name}\": {describe(spec)}; next run {when}."


def _list(store: JobStore, runs: RunLog, target: DeliverTo, ctx: ToolContext) -> str:
    states = runs.states()
    lines = []
    for job in store.load().values():
        if not _mine(job, target, ctx):
            continue
        spec, state = job.spec, states.get(job.spec.name)
        if state is not None and state.done:
            status = "done"
        elif not spec.enabled:
            status = "disabled"
        else:
            now = datetime.now(zone(spec.timezone))
            anchor = datetime.fromtimestamp((state and state.last_slot) or job.created or now.timestamp(), now.tzinfo)
            upcoming = next_fire(trigger_for(spec, anchor), now)
            status = f"next {upcoming:%Y-%m-%d %H:%M %Z}" if upcoming else "no further runs"
        lines.append(f"- {spec.name}: {describe(spec)}; {status}; message: {spec.message[:120]}")
    return "\n".join(lines) if lines else "No scheduled jobs for this chat."


def _remove(store: JobStore, target: DeliverTo, ctx: ToolContext, name: str | None) -> str:
    if not name:
        raise ToolError("remove needs the job's name; use list to see them.")
    job = store.load().get(name.strip())
    if job is None or not _mine(job, target, ctx):
        raise ToolError(f"No job named {name!r} for this chat; use list to see them.")
    try:
        store.remove(job.spec.name)
    except ReverieError as exc:
        raise ToolError(str(exc)) from None
    return f"Removed \"{job.spec.name}\"; it will not run again."


def _slug(text: str) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())[:4]
    return "-".join(words) or "job"
