"""The scheduler inside ``reverie start``: every job fires once per slot, never twice, never silently not.

    cron = CronService(config, gateway.publish, runtime.service, runtime.usage)
    delivery.observers.append(cron.observe)
    await cron.start(pending_turns, unsent_replies)   # adopt, catch up, then APScheduler 3.x on this loop
    ...
    cron.stop()                    # no new runs
    await cron.finish(1.0)         # after the drain: record the runs that ended

A run puts the job's message on the bus as a scheduled ``Inbound`` through the gateway, so it is
journaled (a run cut by a crash is finished by the next start, once) and deduplicated by its message
id ``cron:<job>:<slot>`` (the same slot can never start two turns). The turn runs in the session
``cron:<job>`` with an empty context (earlier runs stay in the file); its answer goes to the job's chat
through the normal delivery path (``agent/cron/running.py``). When the
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
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.bus import Inbound, Outbound
from agent.config import Config
from agent.cron.expr import parse_at, slots_between, trigger_for, zone
from agent.cron.jobs import Job, JobStore, default_target
from agent.cron.running import Publish, Runs
from agent.cron.runs import JobState, Run, RunLog
from agent.errors import ReverieError
from agent.service import AgentService
from agent.usage import UsageLog

if TYPE_CHECKING:
    from apscheduler.events import JobEvent
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

logger = logging.getLogger(__name__)
POLL = 2.0  # seconds between looks at jobs.yaml and `reverie cron run` requests (the issue allows 5)


class CronService(Runs):
    def __init__(self, config: Config, publish: Publish, service: AgentService, usage: UsageLog, *,
                 config_path: Path | None = None, retry_delay: float = 60.0) -> None:
        super().__init__()
        self.config, self.publish, self.service, self.usage = config, publish, service, usage
        workspace = config.workspace_path
        self.jobs = JobStore(workspace, config.cron_jobs, config_path)
        self.log = RunLog(workspace / "cron")
        self.requests = workspace / "cron" / "requests"
        self.window, self.retry_delay = config.cron.catch_up_window, retry_delay
        self.default = default_target(config)
        self.scheduler: AsyncIOScheduler | None = None
        self._known: dict[str, Job] = {}
        self._slots: dict[str, datetime] = {}  # job -> the slot APScheduler just submitted

    # --- lifecycle -------------------------------------------------------------------------------------

    async def start(self, pending: Iterable[Inbound] = (), unsent: Iterable[Outbound] = ()) -> None:
        """Adopt runs a restart cut (``pending`` turns and ``unsent`` replies from the journal), catch
        up, schedule every job, and watch for changes."""
        from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, EVENT_JOB_SUBMITTED
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        self.scheduler = AsyncIOScheduler(timezone=zone(None))
        self.scheduler.add_listener(self._submitted, EVENT_JOB_SUBMITTED)
        self.scheduler.add_listener(self._overlapped, EVENT_JOB_MAX_INSTANCES)
        self.scheduler.add_listener(self._missed, EVENT_JOB_MISSED)
        self.scheduler.start()
        ids = {m.message_id for m in pending if m.scheduled and m.message_id}
        ids |= {o.reply_to for o in unsent if o.reply_to and o.reply_to.startswith("cron:")}
        try:
            self.adopt(self.jobs.load(), ids)
        except ReverieError as exc:
            logger.error("cron jobs not loaded: %s", exc)
        self._reconcile(startup=True)
        self.spawn(self._poll(), "cron poll")

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

    # --- scheduling ------------------------------------------------------------------------------------

    def _reconcile(self, *, startup: bool = False) -> None:
        """Make the scheduler match the jobs: new ones added, changed ones replaced, removed ones gone.

        A job whose schedule changed (or that was disabled or enabled) starts afresh: no catch-up for
        slots of its old schedule. The state is read once and written once, whatever the number of jobs.
        """
        assert self.scheduler is not None
        try:
            jobs = self.jobs.load()
        except ReverieError as exc:
            logger.error("cron jobs not reloaded: %s", exc)
            return
        for name in set(self._known) - set(jobs):
            self._unschedule(name)
        states, now = self.log.states(), time.time()
        updates: dict[str, dict[str, Any]] = {}
        for name, job in jobs.items():
            if self._known.get(name) == job and not startup:
                continue
            self._unschedule(name)
            state, mark = states.get(name), fingerprint(job)
            if state is None or _renewed(state, job, mark):
                state = JobState(seen=now, fingerprint=mark)  # no catch-up for slots before now
                updates[name] = dataclasses.asdict(state)
            elif state.fingerprint is None:
                updates[name] = {"fingerprint": mark}
            if job.spec.enabled:
                try:
                    self._schedule(job, state, catch_up=startup)
                except ReverieError as exc:
                    logger.error("cron job %s not scheduled: %s", name, exc)
        self.log.mark_many(updates)
        self._known = jobs

    def _unschedule(self, name: str) -> None:
        assert self.scheduler is not None
        with contextlib.suppress(Exception):  # apscheduler's JobLookupError: not scheduled
            self.scheduler.remove_job(name)

    def _schedule(self, job: Job, state: JobState, *, catch_up: bool) -> None:
        """Add ``job`` to the scheduler; at start (``catch_up``), settle the slots that passed while down."""
        assert self.scheduler is not None
        spec = job.spec
        tz = zone(spec.timezone)
        now = datetime.now(tz)
        if spec.at is not None:
            self._schedule_once(job, parse_at(spec.at, tz), now, state)
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

    def _schedule_once(self, job: Job, when: datetime, now: datetime, state: JobState) -> None:
        assert self.scheduler is not None
        name = job.spec.name
        if state.done or state.running or (state.last_slot or 0) >= when.timestamp():
            return  # ran, or is being finished by the journal
        if when.timestamp() > now.timestamp():  # as instants: same-zone datetimes compare by wall clock
            self.scheduler.add_job(self._fire, "date", run_date=when, args=[name], id=name, name=name,
                                   replace_existing=True, misfire_grace_time=max(1, int(self.window)))
        elif now.timestamp() - when.timestamp() <= self.window:
            self.spawn(self.run(job, when), f"cron {name}")  # came due while reverie was down: once, now
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
            self.spawn(self.run(job, latest), f"cron {name}")

    # --- APScheduler callbacks (on the event loop) ----------------------------------------------------

    def _submitted(self, event: JobEvent) -> None:
        times = getattr(event, "scheduled_run_times", None) or []
        if not times:
            return
        self._slots[event.job_id] = times[-1]
        # Slots APScheduler folded into this one (the machine slept, or the loop was blocked): recorded.
        state, job = self.log.states().get(event.job_id), self.scheduler and self.scheduler.get_job(event.job_id)
        if state is None or not state.last_slot or job is None:
            return
        count, _ = slots_between(job.trigger, datetime.fromtimestamp(state.last_slot, UTC),
                                 times[-1] - timedelta(microseconds=1))
        if count:
            self.log.record(Run(event.job_id, times[0].timestamp(), None, None, "missed",
                                detail=f"{count} slot{'s' if count != 1 else ''} passed while reverie was asleep or "
                                       "busy; the latest one runs now"))

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
        job = self._known.get(event.job_id)
        changes: dict[str, Any] = {"last_outcome": "missed", "done": bool(job and job.spec.at is not None)}
        if stamp is not None:
            changes["last_slot"] = stamp
        self.log.mark(event.job_id, **changes)

    async def _fire(self, name: str) -> None:
        """APScheduler's job: the run is our own task, so a stop can wait for it and then cancel it."""
        job = self._known.get(name)
        if job is not None:
            slot = self._slots.pop(name, None) or datetime.now(zone(job.spec.timezone))
            task = self.spawn(self.run(job, slot), f"cron {name}")
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)  # keeps max_instances honest: busy until the run ends

    # --- changes from the CLI and the chat --------------------------------------------------------------

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL)
            try:
                if self.scheduler is not None:
                    # The loop's timer counts monotonic time, which stops while the machine sleeps:
                    # look at the wall clock now and then, so a job due during a sleep runs on waking.
                    self.scheduler.wakeup()
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
            self.spawn(self.run(job, None, request), f"cron {job.spec.name} by hand")


def fingerprint(job: Job) -> str:
    """What decides a job's slots; when it changes, the job starts afresh."""
    spec = job.spec
    return json.dumps([spec.schedule, spec.every, spec.at, spec.timezone, spec.enabled])


def _renewed(state: JobState, job: Job, mark: str) -> bool:
    """A state that belongs to an earlier job of this name, or to another schedule of it."""
    if state.last_slot is None and state.seen is None:
        return True
    if job.created and state.seen and job.created > state.seen:
        return True  # removed and added again under this name
    return state.fingerprint is not None and state.fingerprint != mark
