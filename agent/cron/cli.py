"""``reverie cron add | list | remove NAME | enable NAME | disable NAME | run NAME | log [NAME]``.

    reverie cron add --name morning --message "Summarize today's GitHub activity" --cron "0 9 * * *"
    reverie cron add --name tea --message "Tea is ready" --at 2026-11-23T17:00 --tz Europe/Paris
    reverie cron add --name water --message "Drink some water" --every 3600 --deliver telegram:12345
    reverie cron list                    # next run, last run and outcome; never changes anything
    reverie cron run morning             # now: through the daemon when it runs (delivered), else here
    reverie cron log morning -n 5

CLI jobs live in ``<workspace>/cron/jobs.yaml``; a running daemon picks changes up within 2 seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
import uuid
from datetime import datetime, tzinfo
from pathlib import Path

from pydantic import ValidationError

from agent.atomic import write_atomic
from agent.chat import load_from_args
from agent.config import Config, CronJob, DeliverTo
from agent.cron import expr
from agent.cron.jobs import Job, JobStore, default_target, parse_target
from agent.cron.runs import JobState, Run, RunLog
from agent.errors import ConfigError, ReverieError
from agent.lock import running_pid
from skills.skill import escape

NO_JOBS = 'No cron jobs. Add one with: reverie cron add --name morning --message "..." --cron "0 9 * * *"'
POLL = 0.2


def run_cron(args: argparse.Namespace) -> int:
    config, config_path = load_from_args(args, need_model=False)
    quiet = logging.getLogger("agent.cron.jobs")  # `list` prints the problems itself, once, with "reverie:"
    if not quiet.handlers:
        quiet.addHandler(logging.NullHandler())
    store = JobStore(config.workspace_path, config.cron_jobs, config_path)
    action, name = args.action, getattr(args, "job", None)
    if action in ("add", "list") and name:
        raise ConfigError(f"`reverie cron {action}` takes no NAME (got {escape(name)!r})"
                          + ("; use --name." if action == "add" else "."))
    if action in ("remove", "enable", "disable", "run") and not name:
        raise ConfigError(f"Say which job: reverie cron {action} NAME. `reverie cron list` shows them.")
    if action == "add":
        return add(config, store, args)
    if action == "list":
        return list_jobs(config, store)
    if action == "log":
        return log(config, store, name, args.limit)
    if action == "run":
        return run(config, config_path, store, str(name))
    assert name
    if action == "remove":
        job = store.remove(name)
        print(f"Removed cron job {escape(name)!r} ({escape(expr.describe(job.spec))}).")
    else:
        job, changed = store.set_enabled(name, action == "enable")
        if not changed:
            print(f"Cron job {escape(name)!r} is already {action}d.")
            return 0
        print(f"{'Enabled' if job.spec.enabled else 'Disabled'} cron job {escape(name)!r}.")
    _daemon_note(config.workspace_path)
    return 0


def add(config: Config, store: JobStore, args: argparse.Namespace) -> int:
    spec = build_spec(config, args)
    job = store.add(spec, "cli")
    where = _where(job.spec.deliver_to) if job.spec.deliver_to else "?"
    print(f"Added cron job {escape(spec.name)!r}: {escape(expr.describe(spec))}, delivered to {escape(where)}.")
    if not spec.enabled:
        print(f"It is disabled; enable it with: reverie cron enable {spec.name}")
    else:
        now = datetime.now().astimezone()
        when = expr.next_fire(expr.trigger_for(spec, now), now)
        print(f"Next run: {fmt(when, expr.zone(spec.timezone)) if when else 'none'}")
    _daemon_note(config.workspace_path)
    return 0


def build_spec(config: Config, args: argparse.Namespace) -> CronJob:
    if not args.name or not args.name.strip():
        raise ConfigError("Give the job a name: reverie cron add --name NAME --message TEXT --cron EXPR.")
    if not args.message or not args.message.strip():
        raise ConfigError("Give the job a message: --message TEXT (what the agent is asked when it fires).")
    if args.model is not None and not args.model.strip():
        raise ConfigError("--model is empty: give a model name, or leave --model out to use llm.model.")
    given = [flag for flag, value in (("--cron", args.cron), ("--every", args.every), ("--at", args.at))
             if value is not None]
    if len(given) != 1:
        raise ConfigError("Give exactly one of --cron \"0 9 * * *\", --every SECONDS or --at 2026-11-23T17:00"
                          + (f" (got {' and '.join(given)})." if given else "."))
    at = args.at
    if at is not None:
        at = expr.parse_at(at, expr.zone(args.tz)).isoformat()
    target = parse_target(args.deliver, config) if args.deliver else default_target(config)
    if target is None:
        raise ConfigError("Where should it be delivered? Pass --deliver CHANNEL:CHAT (e.g. telegram:12345), or "
                          "configure a channel and your id as owner.<platform> (e.g. owner.telegram).")
    try:
        return CronJob(name=args.name, message=args.message, schedule=args.cron, every=args.every, at=at,
                       timezone=args.tz, deliver_to=target, model=args.model, enabled=not args.disabled)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'job'}: {e['msg'].removeprefix('Value error, ')}"
                             for e in exc.errors())
        raise ConfigError(f"Invalid cron job: {problems}.") from None


def list_jobs(config: Config, store: JobStore) -> int:
    """Every job with its next and last run. Reads only: nothing on disk changes."""
    jobs = store.load()
    states = RunLog(config.workspace_path / "cron").states()
    if not jobs:
        print(NO_JOBS)
    now = datetime.now().astimezone()
    owner = default_target(config)
    fallback = f"{_where(owner)} (the owner, by default)" if owner else "nowhere: set deliver_to or owner.<platform>"
    for job in jobs.values():
        spec, state = job.spec, states.get(job.spec.name)
        tz = expr.zone(spec.timezone)
        target = _where(spec.deliver_to) if spec.deliver_to else fallback
        print(f"{escape(spec.name)}  ({job.source}, {'enabled' if spec.enabled else 'disabled'})")
        print(f"  trigger   {escape(expr.describe(spec))}")
        print(f"  deliver   {escape(target)}")
        print(f"  next run  {next_run(job, state, now, tz, config.cron.catch_up_window)}")
        print(f"  last run  {last_run(state, tz)}")
    for problem in store.problems:
        print(f"reverie: {escape(problem)}", file=sys.stderr)
    return 0


def next_run(job: Job, state: JobState | None, now: datetime, tz: tzinfo, window: float) -> str:
    if state is not None and state.done:
        return "done"
    if not job.spec.enabled:
        return "- (disabled)"
    anchor = now
    if job.spec.every is not None:
        stamp = next((t for t in (state and state.last_slot, job.created, state and state.seen) if t), None)
        anchor = datetime.fromtimestamp(stamp, tz) if stamp else now
    when = expr.next_fire(expr.trigger_for(job.spec, anchor), now)
    if when is not None:
        return fmt(when, tz)
    if not job.spec.at:
        return "none"
    due = expr.parse_at(job.spec.at, tz)
    if (now - due).total_seconds() > window:
        return f"missed (due {fmt(due, tz)}, beyond cron.catch_up_window)"
    return f"runs at the next start (due {fmt(due, tz)}, within cron.catch_up_window)"


def last_run(state: JobState | None, tz: tzinfo) -> str:
    if state is None or state.last_start is None:
        return "never"
    text = fmt(datetime.fromtimestamp(state.last_start, tz), tz)
    if state.running:
        return f"{text}, still running"
    return f"{text}, {state.last_outcome or 'unknown'}" + (" (done)" if state.done else "")


def log(config: Config, store: JobStore, name: str | None, limit: int) -> int:
    if limit < 1:
        raise ConfigError(f"`reverie cron log -n N` needs N to be at least 1 (got {limit}).")
    runs = RunLog(config.workspace_path / "cron").runs(name, limit)
    if not runs and name is not None:
        jobs = store.load()
        if name not in jobs:
            raise unknown(name, jobs)
    if not runs:
        print("No runs yet.")
    for r in runs:
        local = datetime.now().astimezone().tzinfo
        assert local is not None
        slot = fmt(datetime.fromtimestamp(r.scheduled, local), local) if r.scheduled else "run by hand"
        start = fmt(datetime.fromtimestamp(r.start, local), local, seconds=True) if r.start else "-"
        took = f"{r.end - r.start:.1f} s" if r.start is not None and r.end is not None else "-"
        parts = [slot, r.job if name is None else "", f"started {start}", f"took {took}", r.outcome,
                 f"message {r.message_id}" if r.message_id else "", r.detail]
        print(escape("  ".join(p for p in parts if p)))
    return 0


def run(config: Config, config_path: Path | None, store: JobStore, name: str) -> int:
    jobs = store.load()
    if name not in jobs:
        raise unknown(name, jobs)
    workspace = config.workspace_path
    if running_pid(workspace):
        result = request_run(workspace, name, config.agent.turn_timeout + 60)
        return report(result)
    from agent.cron.local import NOTHING_SENT, run_without_daemon

    result, reply = asyncio.run(run_without_daemon(config, config_path, name))
    if result.outcome != "ok":
        error = reply.strip() or result.detail or "no answer"
        print(f"reverie: job {escape(name)!r} failed: {escape(error)}", file=sys.stderr)
        return 1
    if result.detail == NOTHING_SENT:
        print("The agent had nothing to send.")
        return 0
    print(escape(reply))
    print("(Not delivered to the chat: the daemon is not running. Start it with `reverie start`.)",
          file=sys.stderr)
    return 0


def unknown(name: str, jobs: dict[str, Job]) -> ConfigError:
    listed = ", ".join(jobs) or "none yet"
    return ConfigError(f"No cron job named {escape(name)!r}. Known jobs: {escape(listed)} (see reverie cron list).")


def request_run(workspace: Path, name: str, timeout: float) -> Run:
    """Ask the running daemon to run ``name`` now; its finished run."""
    folder = workspace / "cron" / "requests"
    ident = uuid.uuid4().hex
    write_request(folder, {"id": ident, "job": name, "time": time.time()})
    print(f"Asked the daemon to run {escape(name)!r}; waiting for it...", file=sys.stderr)
    runlog = RunLog(workspace / "cron")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for r in runlog.runs(name, 20):
            if r.request == ident and r.outcome != "running":
                return r
        if not running_pid(workspace):
            (folder / f"{ident}.json").unlink(missing_ok=True)
            raise ReverieError("The daemon stopped before the run finished; see `reverie cron log`.")
        time.sleep(POLL)
    taken = not (folder / f"{ident}.json").exists()
    (folder / f"{ident}.json").unlink(missing_ok=True)
    raise ReverieError(f"No result from the daemon after {timeout:.0f} s"
                       + ("; it may still be running: see `reverie cron log`." if taken else
                          "; it never picked up the request (is it stuck? see its log)."))


def write_request(folder: Path, data: dict[str, object]) -> None:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    write_atomic(folder / f"{data['id']}.json", json.dumps(data))


def report(result: Run) -> int:
    if result.outcome == "ok":
        sent = f", delivered as message {result.message_id}" if result.message_id else ""
        print(escape(f"Ran {result.job!r}: ok{sent}." + (f" {result.detail}" if result.detail else "")))
        return 0
    print(escape(f"Ran {result.job!r}: {result.outcome}" + (f": {result.detail}" if result.detail else "") + "."))
    return 1


def fmt(when: datetime, tz: tzinfo, *, seconds: bool = False) -> str:
    """``2026-11-23 09:00 CET``: local time in ``tz``, with the zone."""
    return when.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M %Z")


def _where(target: DeliverTo) -> str:
    return f"{target.channel}:{target.chat}"


def _daemon_note(workspace: Path) -> None:
    pid = running_pid(workspace)
    if pid:
        print(f"The running daemon{f' (pid {pid})' if pid > 0 else ''} picks this up within 2 seconds.")
    else:
        print("It takes effect once the daemon runs (`reverie start`).")

