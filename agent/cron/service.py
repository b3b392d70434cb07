"""The scheduler inside ``reverie start``: every job fires once per slot, never twice, never silently not.

    cron = CronService(config, gateway.publish, runtime.service, runtime.usage, delivery)
    await cron.start(pending)      # catch-up, then APScheduler 3.x AsyncIOScheduler on this loop
    ...
    await cron.stop()

A run puts the job's message on the bus as a scheduled ``Inbound`` through the gateway, so it is
journaled (a run cut by a crash is finished by the next start, once) and deduplicated by its message
id ``cron:<job>:<slot>`` (the same slot can never start two turns). The turn runs in the job's own
session ``cron:<job>``; its answer goes to the job's chat through the normal delivery path. When the
platform confirms it, the text is added to that chat's session as a scheduled message, so a later
"what did you send me this morning?" can be answered. An answer of ``[nothing to send]`` sends nothing.

Exactly once: a slot is saved in ``cron/state.json`` before its run is published. At start, a slot
missed while reverie was down runs once if it is within ``cron.catch_up_window``; older ones are
recorded as missed (one record, with the count). A slot that comes while the job's previous run is
still going is skipped and recorded. Interval jobs keep their phase from the last slot. A one-shot
job runs once (or is recorded missed) and is then done. A failed run is retried once, and only when
no model call was made (nothing was spent, nothing was said).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.bus import Inbound, Outbound
from agent.config import Config, DeliverTo
from agent.cron.expr import parse_at, slots_between, trigger_for, zone
from agent.cron.jobs import Job, JobStore, default_target
from agent.cron.local import job_prompt, scheduled_note
from agent.cron.runs import JobState, Outcome, Run, RunLog
from agent.errors import ReverieError
from agent.service import AgentService
from agent.usage import UsageLog

if TYPE_CHECKING:
    from apscheduler.events import JobEvent
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

logger = logging.getLogger(__name__)
UNCONFIRMED = 600.0  # seconds after the turn's own limit to wait for the platform's confirmation
POLL = 2.0  # seconds between looks at jobs.yaml and at `reverie cron run` requests (the issue allows 5)
Publish = Callable[[Inbound], Awaitable[Any]]
Ending = tuple[str, str | None, Outbound]  # (sent | abandoned | nothing, the platform's id, what went out)


class CronService:
    def __init__(self, config: Config, publish: Publish, service: AgentService, usage: UsageLog, *,
                 config_path: Path | None = None, retry_delay: float = 60.0) -> None:
        self.config, self.publish, self.service, self.usage = config, publish, service, usage
        workspace = config.workspace_path
        self.jobs = JobStore(workspace, config.cron_jobs, config_path)
        self.log = RunLog(workspace / "cron")
        self.requests = workspace / "cron" / "requests"
        self.window, self.retry_delay = config.cron.catch_up_window, retry_delay
        self.default = default_target(config)
        self.scheduler: AsyncIOScheduler | None = None
        self._known: dict[str, Job] = {}
        self._active: set[str] = set()  # jobs with a run going on
        self._slots: dict[str, datetime] = {}  # job -> the slot APScheduler just submitted
        self._waiting: dict[str, asyncio.Future[Ending]] = {}  # message id -> how its answer ended
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- lifecycle -------------------------------------------------------------------------------------

    async def start(self, pending: Iterable[Inbound] = ()) -> None:
        """Settle runs a restart cut, catch up, schedule every job, and watch for changes."""
        from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, EVENT_JOB_SUBMITTED
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        self.scheduler = AsyncIOScheduler(timezone=zone(None))
        self.scheduler.add_listener(self._submitted, EVENT_JOB_SUBMITTED)
        self.scheduler.add_listener(self._overlapped, EVENT_JOB_MAX_INSTANCES)
        self.scheduler.add_listener(self._missed, EVENT_JOB_MISSED)
        self.scheduler.start()
        self._interrupted({m.message_id for m in pending if m.scheduled and m.message_id})
        self._reconcile(startup=True)
        self._spawn(self._poll(), "cron poll")

    def stop(self) -> None:
        """No new runs from now on; runs in progress go on (their turns are journaled and drained)."""
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        for task in list(self._tasks):
            if task.get_name() == "cron poll":
                task.cancel()

    async def finish(self, timeout: float) -> None:  # noqa: ASYNC109 (a deadline for the whole wait)
        """Wait for runs in progress to be recorded (after the drain delivered their answers), then stop."""
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()  # recorded at the next start, from the state and the journal
            await asyncio.gather(*pending, return_exceptions=True)

    def observe(self, out: Outbound, status: str, platform_id: str | None) -> None:
        """A ``Delivery`` observer: how the answer to one of our runs ended."""
        future = self._waiting.get(out.reply_to or "")
        if future is not None and not future.done() and out.kind in ("reply", "error", "nothing", "failed"):
            future.set_result((status, platform_id, out))

    # --- scheduling ------------------------------------------------------------------------------------

    def _reconcile(self, *, startup: bool = False) -> None:
        """Make the scheduler match the jobs: new ones added, changed ones replaced, removed ones gone."""
        assert self.scheduler is not None
        try:
            jobs = self.jobs.load()
        except ReverieError as exc:
            logger.error("cron jobs not reloaded: %s", exc)
            return
        for name in set(self._known) - set(jobs):
            self._unschedule(name)
        states, seen = self.log.states(), time.time()  # read once, and new jobs marked in one write
        fresh: dict[str, dict[str, Any]] = {}
        for name, job in jobs.items():
            if self._known.get(name) == job and not startup:
                continue
            self._unschedule(name)
            state = states.get(name)
            if state is not None and job.created and state.seen and job.created > state.seen:
                state = None  # removed and added again under this name: a new job, a new state
            if state is None or (state.last_slot is None and state.seen is None):
                state = JobState(seen=seen)  # a new job: no catch-up for slots before now
                fresh[name] = dataclasses.asdict(state)
            if job.spec.enabled:
                try:
                    self._schedule(job, state, catch_up=startup)
                except ReverieError as exc:
                    logger.error("cron job %s not scheduled: %s", name, exc)
        self.log.mark_many(fresh)
        self._known = jobs

    def _unschedule(self, name: str) -> None:
        assert self.scheduler is not None
        with contextlib.suppress(Exception):  # apscheduler's JobLookupError: not scheduled
            self.scheduler.remove_job(name)

    def _schedule(self, job: Job, state: JobState, *, catch_up: bool) -> None:
        """Add ``job`` to the scheduler; at start (``catch_up``), settle the slots that passed while down.

        A job changed while reverie runs gets no catch-up: its new schedule starts now.
        """
        assert self.scheduler is not None
        spec = job.spec
        tz = zone(spec.timezone)
        now = datetime.now(tz)
        if spec.at is not None:
            self._schedule_once(job, parse_at(spec.at, tz), now, state.done)
            return
        after = datetime.fromtimestamp(state.last_slot or state.seen or time.time(), tz)
        anchor = after if spec.every is not None and state.last_slot else \
            datetime.fromtimestamp(job.created or state.seen or time.time(), tz)
        trigger = trigger_for(spec, anchor)
        count, latest = slots_between(trigger, after, now) if catch_up else (0, None)
        if latest is not None:
            self._catch_up(job, count, latest, now)
        self.scheduler.add_job(self._fire, trigger, args=[spec.name], id=spec.name, name=spec.name,
                               replace_existing=True, coalesce=True, max_instances=1,
                               misfire_grace_time=max(1, int(self.window)))

    def _schedule_once(self, job: Job, when: datetime, now: datetime, done: bool) -> None:
        assert self.scheduler is not None
        name = job.spec.name
        if done:
            return
        if when.timestamp() > now.timestamp():  # as instants: same-zone datetimes compare by wall clock
            self.scheduler.add_job(self._fire, "date", run_date=when, args=[name], id=name, name=name,
                                   replace_existing=True, misfire_grace_time=max(1, int(self.window)))
        elif now.timestamp() - when.timestamp() <= self.window:
            self._spawn(self.run(job, when), f"cron {name}")  # came due while reverie was down: once, now
        else:
            self.log.record(Run(name, when.timestamp(), None, None, "missed",
                                detail="came due while reverie was down, longer ago than cron.catch_up_window"))
            self.log.mark(name, last_slot=when.timestamp(), last_outcome="missed", done=True)

    def _catch_up(self, job: Job, count: int, latest: datetime, now: datetime) -> None:
        """Slots that passed while reverie was down: the latest runs once if recent enough, the rest are missed."""
        name = job.spec.name
        recent = now.timestamp() - latest.timestamp() <= self.window
        missed = count - 1 if recent else count
        if missed:
            self.log.record(Run(name, latest.timestamp(), None, None, "missed",
                                detail=f"{missed} slot{'s' if missed != 1 else ''} passed while reverie was down"
                                       + ("; the latest one runs now" if recent else "")))
            self.log.mark(name, last_slot=latest.timestamp(), last_outcome="missed")
        if recent:
            self._spawn(self.run(job, latest), f"cron {name}")

    # --- APScheduler callbacks (on the event loop) ----------------------------------------------------

    def _submitted(self, event: JobEvent) -> None:
        times = getattr(event, "scheduled_run_times", None) or []
        if times:
            self._slots[event.job_id] = times[-1]

    def _overlapped(self, event: JobEvent) -> None:
        times = getattr(event, "scheduled_run_times", None) or [None]
        slot = times[-1].timestamp() if times[-1] else None
        self.log.record(Run(event.job_id, slot, None, None, "skipped", detail="the previous run was still going"))
        if slot is not None:
            self.log.mark(event.job_id, last_slot=slot)

    def _missed(self, event: JobEvent) -> None:
        slot = getattr(event, "scheduled_run_time", None)
        stamp = slot.timestamp() if slot else None
        self.log.record(Run(event.job_id, stamp, None, None, "missed",
                            detail="reverie was busy or asleep past cron.catch_up_window"))
        if stamp is not None:
            self.log.mark(event.job_id, last_slot=stamp, last_outcome="missed")

    async def _fire(self, name: str) -> None:
        """APScheduler's job: the run is our own task, so a stop can wait for it and then cancel it."""
        job = self._known.get(name)
        if job is not None:
            slot = self._slots.pop(name, None) or datetime.now(zone(job.spec.timezone))
            task = self._spawn(self.run(job, slot), f"cron {name}")
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)  # keeps max_instances honest: busy until the run ends

    # --- a run -----------------------------------------------------------------------------------------

    async def run(self, job: Job, slot: datetime | None, request: str | None = None) -> Run:
        """Run ``job`` for ``slot`` (None: by hand) through the agent and its delivery; the run record."""
        name = job.spec.name
        if name in self._active:
            run = Run(name, slot.timestamp() if slot else None, None, None, "skipped",
                      detail="the previous run was still going", request=request)
            self.log.record(run)
            return run
        self._active.add(name)
        try:
            return await self._execute(job, slot, request)
        finally:
            self._active.discard(name)

    async def _execute(self, job: Job, slot: datetime | None, request: str | None) -> Run:
        spec, start = job.spec, time.time()
        target = spec.deliver_to or self.default
        stamp = slot.timestamp() if slot else None
        if target is None:
            return self._finish(job, Run(spec.name, stamp, start, time.time(), "error", request=request,
                                         detail="no chat to deliver to: set deliver_to, or owner.<platform>"))
        mid = f"cron:{spec.name}:{(slot or datetime.now(zone(spec.timezone))).isoformat(timespec='seconds')}"
        mid += f":{request}" if request else ""
        changes: dict[str, Any] = {"last_start": start, "running": mid, "last_outcome": "running"}
        if stamp is not None:
            changes["last_slot"] = stamp
        self.log.mark(spec.name, **changes)  # before publishing: a restart never repeats this slot
        for attempt in (1, 2):
            calls = self.usage.calls[f"cron:{spec.name}"]
            status, platform_id, out = await self._ask(job, target, slot, mid)
            if status != "failed" or self.usage.calls[f"cron:{spec.name}"] != calls or attempt == 2:
                break
            logger.warning("cron job %s failed before any model call (%s); retrying in %.0f s", spec.name,
                           out.text[:200], self.retry_delay)
            await asyncio.sleep(self.retry_delay)
            mid += ":retry"
        run = Run(spec.name, stamp, start, time.time(), _outcome(status, out), platform_id,
                  _detail(status, out), request)
        if status == "sent" and out.kind == "reply":
            self.service.append_later(f"{target.channel}:{target.chat}", scheduled_note(spec.name, out.text))
        elif status == "failed":  # nothing fires silently: the chat hears that its job could not run
            await self.service.bus.publish_outbound(Outbound(
                target.channel, target.chat, f"The scheduled job \"{spec.name}\" could not run: {out.text}",
                "notice", reply_to=mid))
        return self._finish(job, run)

    async def _ask(self, job: Job, target: DeliverTo, slot: datetime | None, mid: str) -> Ending:
        future: asyncio.Future[Ending] = asyncio.get_running_loop().create_future()
        self._waiting[mid] = future
        try:
            await self.publish(Inbound(target.channel, target.chat, "cron", job_prompt(job, target, slot),
                                       message_id=mid, scheduled=True, scope=f"cron:{job.spec.name}"))
            limit = self.config.agent.turn_timeout + UNCONFIRMED
            try:
                return await asyncio.wait_for(asyncio.shield(future), limit)
            except TimeoutError:  # the platform is down: delivery keeps trying, the job can run again
                late = Outbound(target.channel, target.chat, f"no delivery confirmed within {limit:.0f} s; "
                                "it is still being retried", "error", reply_to=mid)
                return "unconfirmed", None, late
        finally:
            self._waiting.pop(mid, None)

    def _finish(self, job: Job, run: Run) -> Run:
        self.log.record(run)
        changes: dict[str, Any] = {"last_end": run.end, "last_outcome": run.outcome, "running": None}
        if job.spec.at is not None and run.scheduled is not None:
            changes["done"] = True  # a one-shot that came due: finished, whatever the outcome
        self.log.mark(job.spec.name, **changes)
        logger.info("cron job %s: %s%s", job.spec.name, run.outcome, f" ({run.detail})" if run.detail else "")
        return run

    def _interrupted(self, pending: set[str]) -> None:
        """Runs a restart cut: the journal finishes those it holds (we wait for them); the rest are errors."""
        for name, state in self.log.states().items():
            if not state.running:
                continue
            if state.running in pending:  # registered now: the resumed turn may answer at once
                future: asyncio.Future[Ending] = asyncio.get_running_loop().create_future()
                self._waiting[state.running] = future
                self._spawn(self._resumed(name, future), f"cron {name} resumed")
            else:
                self.log.record(Run(name, state.last_slot, state.last_start, None, "error",
                                    detail="reverie stopped during this run, before it was recorded"))
                self.log.mark(name, running=None, last_outcome="error")

    async def _resumed(self, name: str, future: asyncio.Future[Ending]) -> None:
        status, platform_id, out = await future
        state = self.log.states().get(name)
        self.log.record(Run(name, state.last_slot if state else None, state.last_start if state else None,
                            time.time(), _outcome(status, out), platform_id,
                            "finished after a restart" + (f": {_detail(status, out)}" if _detail(status, out) else "")))
        self.log.mark(name, running=None, last_end=time.time(), last_outcome=_outcome(status, out))

    # --- changes from the CLI and the chat --------------------------------------------------------------

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL)
            try:
                if self.jobs.changed():
                    self._reconcile()
                self._take_requests()
            except Exception:  # the poller must keep running
                logger.exception("cron: checking for changed jobs failed")

    def _take_requests(self) -> None:
        """`reverie cron run NAME` while the daemon runs: a request file, answered with a run record."""
        try:
            files = sorted(self.requests.glob("*.json"))
        except OSError:
            return
        for path in files:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                path.unlink()
            except (OSError, ValueError):
                continue
            job = self._known.get(str(data.get("job")))
            request = str(data.get("id") or path.stem)
            if job is None:
                self.log.record(Run(str(data.get("job")), None, time.time(), time.time(), "error",
                                    detail="no such job", request=request))
                continue
            self._spawn(self.run(job, None, request), f"cron {job.spec.name} by hand")

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
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
