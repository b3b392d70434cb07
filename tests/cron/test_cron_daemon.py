"""Cron inside the daemon, in process: the Telegram and LLM stand-ins, the real scheduler, and the clock
moved with time-machine (the scheduler is woken after each move, so nothing waits for real hours)."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine

from agent.config import Config
from agent.config_file import validate
from agent.cron.runs import Run, RunLog
from agent.daemon import Daemon, build_daemon
from agent.serve import serve
from tests.fakes.llm import Delay, Fail, FakeLLM, Recorded, Turn
from tests.fakes.telegram import FakeTelegram

PARIS = ZoneInfo("Europe/Paris")
OWNER = 111


def at(day: int, hour: int, minute: int = 0, second: float = 0.0) -> datetime:
    """A moment in November 2026, Paris time (the 23rd is a Monday)."""
    whole = int(second)
    return datetime(2026, 11, day, hour, minute, whole, int((second - whole) * 1e6), tzinfo=PARIS)


def make_config(tmp_path: Path, llm: FakeLLM, tg: FakeTelegram, *jobs: dict[str, Any], scope: str = "chat",
                **extra: Any) -> Config:
    return validate({
        "workspace": str(tmp_path / "ws"),
        "llm": {"provider": "anthropic", "model": "claude-test", "api_key": "sk-ant-cron-000111",
                "base_url": llm.url, "max_retries": 0, "stream_retries": 0},
        "channels": [{"type": "telegram", "token": tg.token, "base_url": tg.base_url, "session_scope": scope}],
        "owner": {"telegram": [str(OWNER)]},
        "cron_jobs": [{"timezone": "Europe/Paris", **job} for job in jobs],
        **extra}, None)


async def until(check: Callable[[], bool], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


@asynccontextmanager
async def running(config: Config) -> AsyncIterator[Daemon]:
    daemon = build_daemon(config)
    stop = asyncio.Event()
    serving = asyncio.create_task(serve(daemon, stop=stop, drain_timeout=5))
    try:
        await until(lambda: daemon.channels["telegram"].state.connected and daemon.cron is not None
                    and daemon.cron.scheduler is not None)
        yield daemon
    finally:
        stop.set()
        await serving


def move(traveller: Any, daemon: Daemon, when: datetime) -> None:
    traveller.move_to(when)
    assert daemon.cron is not None and daemon.cron.scheduler is not None
    daemon.cron.scheduler.wakeup()


def sent(tg: FakeTelegram) -> list[str]:
    return [str(c.get("text")) for c in tg.calls_of("sendMessage")]


def runs(config: Config) -> list[Run]:
    return RunLog(config.workspace_path / "cron").runs(limit=1000)


def last_user_text(rec: Recorded) -> str:
    content = rec.body["messages"][-1]["content"]
    return content if isinstance(content, str) else " ".join(b.get("text", "") for b in content
                                                              if b.get("type") == "text")


def briefing(rec: Recorded) -> Turn:
    text = last_user_text(rec)
    return Turn(text="Good morning! 3 PRs merged.") if "[Scheduled job" in text else Turn(text="You asked.")


@pytest.mark.parametrize("scope", ["chat", "user"])  # user: the owner's conversation is "telegram:user:<id>"
async def test_the_morning_briefing_reaches_telegram_and_the_next_turn_knows_it(tmp_path: Path, fake_llm: FakeLLM,
                                                                                scope: str) -> None:
    fake_llm.responder = briefing
    job = {"name": "morning", "schedule": "0 9 * * 1-5", "message": "Summarize today's GitHub activity"}
    async with FakeTelegram() as tg:
        config = make_config(tmp_path, fake_llm, tg, job, scope=scope)
        with time_machine.travel(at(23, 8, 59, 58), tick=True) as traveller:
            async with running(config) as daemon:
                move(traveller, daemon, at(23, 9, 0, 0.2))
                await until(lambda: sent(tg) == ["Good morning! 3 PRs merged."])
                tg.push_text(OWNER, "What did you send me this morning?")
                await until(lambda: len(sent(tg)) == 2)
    job_request, chat_request = fake_llm.requests
    assert "Summarize today's GitHub activity" in last_user_text(job_request)
    assert "[nothing to send]" in last_user_text(job_request)  # how to say there is nothing
    history = json.dumps(chat_request.body["messages"])
    assert "Good morning! 3 PRs merged." in history and "Scheduled message from job" in history
    (run,) = runs(config)
    assert (run.job, run.outcome, run.scheduled) == ("morning", "ok", at(23, 9).timestamp())
    assert run.message_id == str(tg.calls_of("sendMessage")[0]["message_id"]) if "message_id" in \
        tg.calls_of("sendMessage")[0] else run.message_id
    assert run.start is not None and run.end is not None and run.start >= at(23, 9).timestamp()


async def test_a_restart_across_a_slot_catches_up_once_and_quick_restarts_never_repeat(
        tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.responder = briefing
    job = {"name": "hourly", "schedule": "0 * * * *", "message": "Check the news"}
    async with FakeTelegram() as tg:
        config = make_config(tmp_path, fake_llm, tg, job)
        with time_machine.travel(at(23, 8, 30), tick=True) as traveller:
            async with running(config):
                pass  # seen at 08:30: nothing to catch up
            traveller.move_to(at(23, 9, 20))  # down over the 09:00 slot
            async with running(config):
                await until(lambda: len(sent(tg)) == 1)
            async with running(config):  # two quick restarts: the 09:00 slot ran, nothing repeats
                await asyncio.sleep(0.3)
            async with running(config):
                await asyncio.sleep(0.3)
            traveller.move_to(at(23, 12, 30))  # down over 10:00, 11:00 and 12:00
            async with running(config):
                await until(lambda: len(sent(tg)) == 2)
                await asyncio.sleep(0.3)
    assert len(sent(tg)) == 2 and len(fake_llm.requests) == 2
    outcomes = [(r.outcome, datetime.fromtimestamp(r.scheduled or 0, PARIS).hour) for r in runs(config)]
    assert outcomes == [("ok", 9), ("missed", 12), ("ok", 12)]
    assert "2 slots passed while reverie was down; the latest one runs now" in runs(config)[1].detail


async def test_a_one_shot_due_while_down_runs_once_then_is_done(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.responder = lambda rec: Turn(text="Call mom!")
    jobs = ({"name": "call-mom", "at": "2026-11-23T17:00", "message": "Remind the owner to call mom"},
            {"name": "too-late", "at": "2026-11-23T14:00", "message": "Remind the owner of lunch"})
    async with FakeTelegram() as tg:
        config = make_config(tmp_path, fake_llm, tg, *jobs)
        with time_machine.travel(at(23, 13, 0), tick=True) as traveller:
            async with running(config):
                pass
            traveller.move_to(at(23, 17, 20))  # down at 14:00 (3 h 20 ago) and at 17:00 (20 min ago)
            async with running(config):
                await until(lambda: sent(tg) == ["Call mom!"])
            async with running(config):
                await asyncio.sleep(0.3)
    assert sent(tg) == ["Call mom!"]
    by_job = {r.job: r for r in runs(config)}
    assert by_job["call-mom"].outcome == "ok" and by_job["too-late"].outcome == "missed"
    states = RunLog(config.workspace_path / "cron").states()
    assert states["call-mom"].done and states["too-late"].done


async def test_an_overlong_run_is_skipped_never_overlapped(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.responder = lambda rec: Delay(2.5, Turn(text="slow answer"))
    async with FakeTelegram() as tg:
        config = make_config(tmp_path, fake_llm, tg, {"name": "busy", "every": 1, "message": "Do slow work"})
        async with running(config):
            await until(lambda: len(sent(tg)) >= 1, timeout=20)
            await asyncio.sleep(0.5)
    done = [r for r in runs(config) if r.outcome == "ok"]
    skipped = [r for r in runs(config) if r.outcome == "skipped"]
    assert done and skipped and all("still going" in r.detail for r in skipped)
    intervals = sorted((r.start or 0, r.end or 0) for r in done)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(intervals))  # never two at once
    assert len(fake_llm.requests) == len(done) + sum(1 for r in runs(config) if r.outcome == "running")


async def test_nothing_to_send_sends_nothing_and_the_marker_never_reaches_a_user(tmp_path: Path,
                                                                                 fake_llm: FakeLLM) -> None:
    fake_llm.script(Turn(text="[nothing to send]"), Turn(text="Rain at 5 pm. [nothing to send]"))
    job = {"name": "weather", "schedule": "*/5 * * * *", "message": "Tell me if it will rain"}
    async with FakeTelegram() as tg:
        config = make_config(tmp_path, fake_llm, tg, job)
        with time_machine.travel(at(23, 8, 59), tick=True) as traveller:
            async with running(config) as daemon:
                move(traveller, daemon, at(23, 9, 0, 0.1))
                await until(lambda: len(runs(config)) == 1)
                move(traveller, daemon, at(23, 9, 5, 0.1))
                await until(lambda: len(sent(tg)) == 1)
    assert sent(tg) == ["Rain at 5 pm."]
    first, second = runs(config)
    assert (first.outcome, first.detail, first.message_id) == ("ok", "nothing to send", None)
    assert second.outcome == "ok" and second.message_id


async def test_a_job_added_from_the_cli_is_picked_up_by_the_running_daemon(tmp_path: Path,
                                                                           fake_llm: FakeLLM) -> None:
    from agent.config import CronJob
    from agent.cron.jobs import JobStore

    fake_llm.responder = lambda rec: Turn(text="Stand up and stretch.")
    async with FakeTelegram() as tg:
        config = make_config(tmp_path, fake_llm, tg)
        async with running(config):
            due = datetime.now(PARIS).replace(microsecond=0).timestamp() + 4
            when = datetime.fromtimestamp(due, PARIS).isoformat(timespec="seconds")
            JobStore(config.workspace_path, []).add(CronJob(name="stretch", message="Remind me to stretch",
                                                            at=when, timezone="Europe/Paris"))
            started = time.time()
            await until(lambda: len(sent(tg)) == 1, timeout=15)
    assert sent(tg) == ["Stand up and stretch."] and time.time() - started < 10
    (run,) = runs(config)
    assert run.outcome == "ok" and abs((run.start or 0) - due) < 3  # within the 2 s poll plus the slot


@asynccontextmanager
async def morning_at_nine(tmp_path: Path, llm: FakeLLM) -> AsyncIterator[tuple[FakeTelegram, Config, Any]]:
    """Telegram, a config with the 9:00 job "morning", and the clock at 08:59:59, ticking on."""
    job = {"name": "morning", "schedule": "0 9 * * *", "message": "Brief me"}
    async with FakeTelegram() as tg:
        config = make_config(tmp_path, llm, tg, job)
        with time_machine.travel(at(23, 8, 59, 59), tick=True) as traveller:
            yield tg, config, traveller


def nine_with_a_quick_retry(traveller: Any, daemon: Daemon) -> None:
    """The morning job's slot comes, and a failed first try is retried after 0.1 s instead of a minute."""
    assert daemon.cron is not None
    daemon.cron.retry_delay = 0.1
    move(traveller, daemon, at(23, 9, 0, 0.1))


async def test_a_failure_before_any_model_call_is_retried_once(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(Fail(500, "api_error", "internal"), Turn(text="Second try worked."))
    async with morning_at_nine(tmp_path, fake_llm) as (tg, config, traveller):
        async with running(config) as daemon:
            nine_with_a_quick_retry(traveller, daemon)
            await until(lambda: "Second try worked." in sent(tg))
    (run,) = runs(config)
    assert run.outcome == "ok" and len(fake_llm.requests) == 2
    assert sent(tg)[-1] == "Second try worked."


async def test_a_stop_during_the_retry_is_finished_after_the_restart(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(Fail(500, "api_error", "internal"), Delay(30, Turn(text="too late")),
                    Turn(text="Finished after all."))
    async with morning_at_nine(tmp_path, fake_llm) as (tg, config, traveller):
        async with running(config) as daemon:
            nine_with_a_quick_retry(traveller, daemon)
            await until(lambda: len(fake_llm.requests) == 2)  # the retry is waiting for the model
        async with running(config):  # the stop cut the retry's turn: the journal resumes it
            await until(lambda: any("Finished after all." in text for text in sent(tg)))
            await until(lambda: len(runs(config)) == 1)
    (run,) = runs(config)  # the retry's answer is the run's, recorded once
    assert run.outcome == "ok" and "after a restart" in run.detail, run


async def test_cron_run_without_a_daemon_runs_the_turn_here_and_says_it_was_not_delivered(
        tmp_path: Path, fake_llm: FakeLLM) -> None:
    import yaml

    from tests.fakes.process import clean_env, reverie_command

    fake_llm.responder = briefing
    async with FakeTelegram() as tg:
        config = make_config(tmp_path, fake_llm, tg, {"name": "morning", "schedule": "0 9 * * *",
                                                      "message": "Brief me"})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)))
    proc = await asyncio.create_subprocess_exec(*reverie_command(), "cron", "run", "morning", "--config", str(path),
                                                env=clean_env(tmp_path), stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert "Good morning! 3 PRs merged." in out.decode() and "Not delivered to the chat" in err.decode()
    (run,) = runs(config)
    assert run.outcome == "ok" and run.scheduled is None and "not delivered" in run.detail
    assert not tg.calls_of("sendMessage")


async def test_a_job_due_while_the_machine_slept_runs_on_waking(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.responder = briefing
    job = {"name": "morning", "schedule": "0 9 * * *", "message": "Brief me"}
    async with FakeTelegram() as tg:
        config = make_config(tmp_path, fake_llm, tg, job)
        with time_machine.travel(at(23, 8, 59, 50), tick=True) as traveller:
            async with running(config):
                traveller.move_to(at(23, 9, 0, 1))  # the wall clock jumps; the loop's timer does not know
                await until(lambda: len(sent(tg)) == 1, timeout=6)  # the 2 s poll wakes the scheduler


async def test_slots_folded_by_a_long_sleep_are_recorded_as_missed(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.responder = briefing
    job = {"name": "every-5", "schedule": "*/5 * * * *", "message": "Check"}
    async with FakeTelegram() as tg:
        config = make_config(tmp_path, fake_llm, tg, job)
        with time_machine.travel(at(23, 8, 59, 59), tick=True) as traveller:
            async with running(config) as daemon:
                move(traveller, daemon, at(23, 9, 0, 0.1))
                await until(lambda: len(runs(config)) == 1)  # the run ended, not just its send
                move(traveller, daemon, at(23, 9, 20, 0.1))  # asleep over 09:05, 09:10 and 09:15
                await until(lambda: len(sent(tg)) == 2)
    outcomes = [(r.outcome, r.detail) for r in runs(config)]
    assert outcomes[0][0] == "ok" and outcomes[-1][0] == "ok" and len(sent(tg)) == 2
    assert ("missed", "3 slots passed while reverie was asleep or busy; the latest one runs now") in outcomes


async def test_an_old_state_file_cannot_make_a_slot_run_twice(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.responder = briefing
    job = {"name": "hourly", "schedule": "0 * * * *", "message": "Check the news"}
    async with FakeTelegram() as tg:
        config = make_config(tmp_path, fake_llm, tg, job)
        state = config.workspace_path / "cron" / "state.json"
        with time_machine.travel(at(23, 8, 30), tick=True) as traveller:
            async with running(config):
                pass
            before = state.read_bytes()
            traveller.move_to(at(23, 9, 20))
            async with running(config):
                await until(lambda: len(sent(tg)) == 1)
            state.write_bytes(before)  # e.g. restored from a backup: the 09:00 slot looks unrun
            async with running(config):
                await until(lambda: len(runs(config)) == 2)
                await asyncio.sleep(0.3)
    assert len(sent(tg)) == 1 and len(fake_llm.requests) == 1  # the gateway knew the slot's message
    assert (runs(config)[-1].outcome, runs(config)[-1].detail) == ("skipped", "this slot's message was already handled")


async def test_a_one_shot_whose_time_is_changed_runs_again(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.responder = lambda rec: Turn(text="Reminder!")
    first = {"name": "reminder", "at": "2026-11-23T09:00", "message": "Remind me"}
    async with FakeTelegram() as tg:
        with time_machine.travel(at(23, 8, 59, 59), tick=True) as traveller:
            config = make_config(tmp_path, fake_llm, tg, first)
            async with running(config) as daemon:
                move(traveller, daemon, at(23, 9, 0, 0.1))
                await until(lambda: len(sent(tg)) == 1)
            config = make_config(tmp_path, fake_llm, tg, {**first, "at": "2026-11-23T10:00"})
            traveller.move_to(at(23, 9, 59, 59))
            async with running(config) as daemon:
                move(traveller, daemon, at(23, 10, 0, 0.1))
                await until(lambda: len(sent(tg)) == 2)
    assert sent(tg) == ["Reminder!", "Reminder!"]


async def test_each_run_starts_with_an_empty_context_in_one_session_file(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.responder = briefing
    job = {"name": "every-5", "schedule": "*/5 * * * *", "message": "Check"}
    async with FakeTelegram() as tg:
        config = make_config(tmp_path, fake_llm, tg, job)
        with time_machine.travel(at(23, 8, 59, 59), tick=True) as traveller:
            async with running(config) as daemon:
                for minute in (0, 5, 10):
                    move(traveller, daemon, at(23, 9, minute, 0.1))
                    await until(lambda m=minute: len(runs(config)) == m // 5 + 1)  # ended, not just sent
                held = daemon.runtime.sessions.get("cron:every-5")  # earlier runs left memory, not just the prompt
                assert [m.role for m in held.messages] == ["user", "assistant"] and held.base == 4
    assert [len(r.body["messages"]) for r in fake_llm.requests] == [1, 1, 1]  # no history re-sent
    files = sorted(p.name for p in (config.workspace_path / "sessions").glob("cron*"))
    assert files == ["cron%3Aevery-5.jsonl"]
