"""A job's turn by hand and the texts of a run: ``reverie cron run NAME`` without a daemon, the job's
prompt, and the note that tells a chat's session what a job sent it.

    run, reply = await run_without_daemon(config, config_path, "morning")   # recorded, and in the job's state
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from agent.bus import Inbound
from agent.config import Config, DeliverTo
from agent.cron.jobs import Job, JobStore, default_target
from agent.cron.runs import Run, RunLog
from agent.service import NOTHING_TO_SEND
from agent.types import Message
from sessions import Session

NOTHING_SENT = "nothing to send"  # a run's detail when the agent answered NOTHING_TO_SEND


def job_prompt(job: Job, target: DeliverTo, slot: datetime | None) -> str:
    """What the job's turn sees as its user message."""
    when = f"for {slot:%Y-%m-%d %H:%M %Z}" if slot else "run by hand"
    return (f"[Scheduled job \"{job.spec.name}\", {when}. Your answer is sent to {target.channel} chat "
            f"{target.chat}. If there is nothing worth sending this time, answer with exactly "
            f"{NOTHING_TO_SEND}]\n\n{job.spec.message}")


def scheduled_note(name: str, text: str) -> Message:
    """The delivered text, for the chat's own session: labelled, so the next turn knows what was sent."""
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M")
    return Message("user", [{"type": "text", "text": f"[Scheduled message from job \"{name}\", sent to this chat "
                                                       f"at {stamp}:]\n{text}"}], sender="cron", kind="scheduled")


async def run_without_daemon(config: Config, config_path: Path | None, name: str) -> tuple[Run, str]:
    """`reverie cron run NAME` with no daemon: the job's turn in this process; the answer is not delivered."""
    from agent.daemon import build_runtime
    from agent.errors import ConfigError

    job = JobStore(config.workspace_path, config.cron_jobs, config_path).load().get(name)
    if job is None:
        raise ConfigError(f"No cron job named {name!r}; `reverie cron list` shows them.")
    runtime = build_runtime(config, config_path)
    target = job.spec.deliver_to or default_target(config) or DeliverTo(channel="terminal", chat="cron")
    start = time.time()
    mid = f"cron:{name}:{datetime.now().isoformat(timespec='seconds')}:by-hand"
    fresh(runtime.service.sessions.get(f"cron:{name}"))  # as the daemon gives each run
    async with runtime.running():
        await runtime.bus.publish_inbound(Inbound(target.channel, target.chat, "cron", job_prompt(job, target, None),
                                                  message_id=mid, scheduled=True, scope=f"cron:{name}"))
        queue = runtime.bus.outbound(target.channel)
        while True:
            out = await queue.get()
            if out.reply_to == mid and out.kind in ("reply", "nothing", "failed"):
                break
    detail = NOTHING_SENT if out.kind == "nothing" else "not delivered: reverie start was not running"
    run = Run(name, None, start, time.time(), "error" if out.kind == "failed" else "ok", None,
              out.text[:300] if out.kind == "failed" else detail)
    log = RunLog(config.workspace_path / "cron")
    log.record(run)
    # like a scheduled run, but no last_slot: running by hand never stands for a slot
    log.mark(name, last_start=run.start, last_end=run.end, last_outcome=run.outcome)
    return run, out.text


def fresh(session: Session) -> None:
    """Each run starts with an empty context: earlier runs stay in the file (behind a compaction mark),
    so a job never re-sends its whole history, and no file is added per run. The daemon applies it in
    the session's queue (AgentService.later), never under a turn still working on it."""
    if session.messages:
        session.compact("", len(session.messages))
