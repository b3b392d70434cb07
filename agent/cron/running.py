"""One cron run, from publishing the job's message to recording how its answer ended.

``Runs`` is the half of ``CronService`` that runs jobs (``agent/cron/service.py`` schedules them):

    run = await service.run(job, slot)      # Run(job, scheduled, start, end, outcome, message_id, detail)

A run publishes a scheduled ``Inbound`` through the gateway (journaled, deduplicated by its message id
``cron:<job>:<slot>``) into the ``cron:<job>`` session, with an empty context, then waits for the ``Delivery``
observer to say how the answer ended: sent (with the platform's id), nothing to send, failed, or
abandoned by the platform. A run a restart cut is finished by the journal and recorded when its
answer arrives (``adopt``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from agent.bus import Inbound, Outbound
from agent.config import Config, DeliverTo
from agent.cron.expr import zone
from agent.cron.jobs import Job, note_key
from agent.cron.local import fresh, job_prompt, scheduled_note
from agent.cron.runs import JobState, Outcome, Run, RunLog
from agent.service import AgentService
from agent.usage import UsageLog

logger = logging.getLogger(__name__)
UNCONFIRMED = 600.0  # seconds after the turn's own limit to wait for the platform's confirmation
Publish = Callable[[Inbound], Awaitable[Any]]
Ending = tuple[str, str | None, Outbound]  # (sent | nothing | failed | abandoned | unconfirmed, platform id, out)


class Runs:
    config: Config
    publish: Publish
    service: AgentService
    usage: UsageLog
    log: RunLog
    default: DeliverTo | None
    retry_delay: float

    def __init__(self) -> None:
        self._active: set[str] = set()  # jobs with a run going on
        self._waiting: dict[str, asyncio.Future[Ending]] = {}  # message id -> how its answer ended
        self._tasks: set[asyncio.Task[Any]] = set()

    def observe(self, out: Outbound, status: str, platform_id: str | None) -> None:
        """A ``Delivery`` observer: how the answer to one of our runs ended."""
        future = self._waiting.get(out.reply_to or "")
        if future is not None and not future.done() and out.kind in ("reply", "error", "nothing", "failed"):
            future.set_result((status, platform_id, out))

    async def run(self, job: Job, slot: datetime | None, request: str | None = None) -> Run:
        """Run ``job`` for ``slot`` (None: by hand) through the agent and its delivery; the run record."""
        name, stamp = job.spec.name, slot.timestamp() if slot else None
        if name in self._active:
            if stamp is not None:
                self.log.mark(name, last_slot=stamp)  # settled: a restart does not catch it up
            return self._record(Run(name, stamp, None, None, "skipped", detail="the previous run was still going",
                                    request=request))
        self._active.add(name)
        try:
            return await self._execute(job, slot, request)
        finally:
            self._active.discard(name)

    async def _execute(self, job: Job, slot: datetime | None, request: str | None) -> Run:
        spec, start = job.spec, time.time()
        target, stamp = spec.deliver_to or self.default, slot.timestamp() if slot else None
        if target is None:
            return self._finish(job, Run(spec.name, stamp, start, time.time(), "error", request=request,
                                         detail="no chat to deliver to: set deliver_to, or owner.<platform>"))
        mid = f"cron:{spec.name}:{(slot or datetime.now(zone(spec.timezone))).isoformat(timespec='seconds')}"
        mid += f":{request}" if request else ""
        changes: dict[str, Any] = {"last_start": start, "running": mid, "last_outcome": "running"}
        if stamp is not None:
            changes["last_slot"] = stamp
        self.log.mark(spec.name, **changes)  # before publishing: a restart never repeats this slot
        self.service.later(f"cron:{spec.name}", fresh)
        for attempt in (1, 2):
            calls = self.usage.calls[f"cron:{spec.name}"]
            ending = await self._ask(job, target, slot, mid)
            if ending is None:
                return self._finish(job, Run(spec.name, stamp, start, time.time(), "skipped", request=request,
                                             detail="this slot's message was already handled"))
            made_call = self.usage.calls[f"cron:{spec.name}"] != calls
            if ending[0] != "failed" or made_call or attempt == 2 or request is not None:
                break
            logger.warning("cron job %s failed before any model call (%s); retrying in %.0f s", spec.name,
                           ending[2].text[:200], self.retry_delay)
            await asyncio.sleep(self.retry_delay)
            mid += ":retry"
            self.log.mark(spec.name, running=mid)  # a restart during the retry finishes this one
        assert ending is not None
        return await self._conclude(job, target, Run(spec.name, stamp, start, None, "ok", request=request), ending)

    async def _ask(self, job: Job, target: DeliverTo, slot: datetime | None, mid: str) -> Ending | None:
        """Publish the job's message and wait for its answer's fate; None if the gateway had seen it."""
        future: asyncio.Future[Ending] = asyncio.get_running_loop().create_future()
        self._waiting[mid] = future
        try:
            taken = await self.publish(Inbound(target.channel, target.chat, "cron", job_prompt(job, target, slot),
                                               message_id=mid, thread_id=target.thread, scheduled=True,
                                               scope=f"cron:{job.spec.name}"))
            if taken is False:
                return None
            limit = self.config.agent.turn_timeout + UNCONFIRMED
            try:
                return await asyncio.wait_for(asyncio.shield(future), limit)
            except TimeoutError:  # the platform is down: delivery keeps trying, the job can run again
                late = Outbound(target.channel, target.chat, f"no delivery confirmed within {limit:.0f} s; "
                                "it is still being retried", "error", reply_to=mid)
                return "unconfirmed", None, late
        finally:
            self._waiting.pop(mid, None)

    async def _conclude(self, job: Job, target: DeliverTo, run: Run, ending: Ending, note: str = "") -> Run:
        """Record how the run ended; note what was sent in the chat's session, or tell the chat it failed."""
        status, platform_id, out = ending
        detail = _detail(status, out)
        run.end, run.outcome, run.message_id = time.time(), _outcome(status, out), platform_id
        run.detail = f"{note}: {detail}" if note and detail else note or detail
        if status == "sent" and out.kind == "reply":
            self.service.append_later(note_key(self.config, target), scheduled_note(job.spec.name, out.text))
        elif status == "failed":  # nothing fires silently: the chat hears that its job could not run
            await self.service.bus.publish_outbound(Outbound(
                target.channel, target.chat, f"The scheduled job \"{job.spec.name}\" could not run: {out.text}",
                "notice", target.thread, reply_to=out.reply_to))
        return self._finish(job, run)

    def _finish(self, job: Job, run: Run) -> Run:
        changes: dict[str, Any] = {"last_end": run.end, "last_outcome": run.outcome, "running": None}
        if job.spec.at is not None and run.scheduled is not None:
            changes["done"] = True  # a one-shot that came due: finished, whatever the outcome
        self.log.mark(job.spec.name, **changes)
        return self._record(run)

    def _record(self, run: Run) -> Run:
        self.log.record(run)
        logger.info("cron job %s: %s%s", run.job, run.outcome, f" ({run.detail})" if run.detail else "")
        return run

    def adopt(self, jobs: dict[str, Job], pending: set[str]) -> None:
        """Runs a restart cut: those the journal is finishing are waited for; the others are errors."""
        for name, state in self.log.states().items():
            if not state.running:
                continue
            job = jobs.get(name)
            if state.running in pending and job is not None:  # registered now: the answer may come at once
                future: asyncio.Future[Ending] = asyncio.get_running_loop().create_future()
                self._waiting[state.running] = future
                self._active.add(name)  # no catch-up run beside it
                self.spawn(self._resumed(job, state, future), f"cron {name} resumed")
            else:
                self.log.record(Run(name, state.last_slot, state.last_start, None, "error",
                                    detail="reverie stopped during this run, before its answer was recorded"))
                self.log.mark(name, running=None, last_outcome="error")

    async def _resumed(self, job: Job, state: JobState, future: asyncio.Future[Ending]) -> None:
        try:
            ending = await future
            target = job.spec.deliver_to or self.default
            run = Run(job.spec.name, state.last_slot, state.last_start, None, "ok")
            if target is not None:
                await self._conclude(job, target, run, ending, note="finished after a restart")
        finally:
            self._active.discard(job.spec.name)
            self._waiting.pop(state.running or "", None)

    def spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _outcome(status: str, out: Outbound) -> Outcome:
    if status in ("abandoned", "failed", "unconfirmed") or out.kind == "error":
        return "error"
    return "ok"


def _detail(status: str, out: Outbound) -> str:
    if status == "nothing":
        return "nothing to send"
    if status == "abandoned":
        return "the chat platform refused the message"
    return out.text[:300] if status in ("failed", "unconfirmed") or out.kind == "error" else ""
