"""``reverie cron add | list | remove | enable | disable | run | log`` through ``agent.cli.main``."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
import yaml

from agent.cli import main
from agent.cron.cli import NO_JOBS
from agent.cron.runs import Run, RunLog
from agent.lock import WorkspaceLock
from tests.fakes.llm import Fail, FakeLLM, Turn

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=PARIS)  # a Monday
MORNING = {"name": "morning", "message": "Summarize today's GitHub activity", "schedule": "0 9 * * *",
           "timezone": "Europe/Paris"}


def write_config(tmp_path: Path, **extra: Any) -> Path:
    data = {"workspace": str(tmp_path / "workspace"), "channels": [{"type": "telegram", "token": "123:abcdef"}],
            "owner": {"telegram": ["12345"]}, **extra}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path, cron_jobs=[MORNING])


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return tmp_path / "workspace"


@pytest.fixture
def now() -> Iterator[None]:
    with time_machine.travel(NOW, tick=False):
        yield


def cron(config: Path, *args: str) -> int:
    return main(["cron", *args, "--config", str(config)])


def stored(workspace: Path) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in yaml.safe_load((workspace / "cron" / "jobs.yaml").read_text())}


def test_add_with_a_crontab_delivers_to_the_owner_by_default(config: Path, workspace: Path, now: None,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert cron(config, "add", "--name", "brief", "--message", "What's on today?", "--cron", "30 9 * * 1-5",
                "--tz", "Europe/Paris") == 0
    out = capsys.readouterr().out
    assert "Added cron job 'brief'" in out and "telegram:12345" in out
    assert "Next run: 2026-11-23 09:30 CET" in out
    assert "reverie start" in out
    entry = stored(workspace)["brief"]
    assert entry["schedule"] == "30 9 * * 1-5" and entry["timezone"] == "Europe/Paris"
    assert entry["deliver_to"] == {"channel": "telegram", "chat": "12345"}
    assert entry["source"] == "cli" and entry["created"] == NOW.timestamp() and entry["enabled"] is True


def test_add_every_with_deliver_and_a_model(config: Path, workspace: Path, now: None,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert cron(config, "add", "--name", "water", "--message", "Drink water", "--every", "3600",
                "--deliver", "telegram:999", "--model", "claude-haiku", "--tz", "Europe/Paris") == 0
    out = capsys.readouterr().out
    assert "telegram:999" in out and "Next run: 2026-11-23 09:00 CET" in out
    entry = stored(workspace)["water"]
    assert entry["every"] == 3600 and entry["model"] == "claude-haiku"
    assert entry["deliver_to"] == {"channel": "telegram", "chat": "999"}


def test_add_a_one_shot_disabled(config: Path, workspace: Path, now: None,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert cron(config, "add", "--name", "tea", "--message", "Tea", "--at", "2026-11-23T17:00",
                "--tz", "Europe/Paris", "--disabled") == 0
    out = capsys.readouterr().out
    assert "disabled" in out and "reverie cron enable tea" in out
    assert stored(workspace)["tea"]["enabled"] is False
    assert cron(config, "enable", "tea") == 0
    capsys.readouterr()
    assert cron(config, "list") == 0
    assert "next run  2026-11-23 17:00 CET" in capsys.readouterr().out


def test_add_says_a_running_daemon_picks_it_up(config: Path, workspace: Path, now: None,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    workspace.mkdir()
    lock = WorkspaceLock(workspace)
    lock.acquire()
    try:
        assert cron(config, "add", "--name", "tea", "--message", "Tea", "--every", "60") == 0
    finally:
        lock.release()
    assert "picks this up within 2 seconds" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "error"), [
    (["--cron", "0 9 * * *", "--every", "60"], "exactly one of --cron"),
    ([], "exactly one of --cron"),
    (["--cron", "0 9 * * 9"], ""),
    (["--cron", "0 9 * * *", "--tz", "Nowhere/Atlantis"], ""),
    (["--at", "someday"], ""),
    (["--at", "2026-11-22T17:00"], "past"),
    (["--every", "0"], "every"),
    (["--every", "inf"], "every: every must be a number of seconds from 1 to 315360000 (10 years)"),
    (["--every", "1e30"], "every: every must be a number of seconds from 1 to 315360000 (10 years)"),
    (["--every", "nan"], "every must be a number of seconds"),
    (["--every", "60", "--model", ""], "--model is empty"),
    (["--every", "60", "--model", "  "], "--model is empty"),
    (["--every", "60", "--deliver", "discord:1"], "configured channels are: telegram"),
    (["--every", "60", "--deliver", "12345"], "CHANNEL:CHAT"),
])
def test_add_refuses_bad_input(config: Path, workspace: Path, now: None, capsys: pytest.CaptureFixture[str],
                               args: list[str], error: str) -> None:
    assert cron(config, "add", "--name", "bad", "--message", "x", *args) == 2
    assert error in capsys.readouterr().err
    assert not (workspace / "cron" / "jobs.yaml").exists()


def test_add_without_a_target_says_what_to_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, owner={})
    assert cron(config, "add", "--name", "tea", "--message", "Tea", "--every", "60") == 2
    err = capsys.readouterr().err
    assert "--deliver" in err and "owner.telegram" in err
    assert cron(config, "add", "--name", "tea", "--message", "Tea", "--every", "60", "--deliver", "telegram:7") == 0


def test_add_refuses_a_config_job_name_and_a_positional_name(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cron(config, "add", "--name", "morning", "--message", "x", "--every", "60") == 2
    assert "already defined in the config file" in capsys.readouterr().err
    assert cron(config, "add", "tea", "--message", "x", "--every", "60") == 2
    assert "--name" in capsys.readouterr().err


def test_list_without_jobs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cron(write_config(tmp_path), "list") == 0
    assert capsys.readouterr().out.strip() == NO_JOBS


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_list_shows_next_and_last_runs_and_never_writes(config: Path, workspace: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    with time_machine.travel(datetime(2026, 11, 22, 12, 0, tzinfo=PARIS), tick=False):
        assert cron(config, "add", "--name", "water", "--message", "Drink", "--every", "3600",
                    "--tz", "Europe/Paris") == 0
        assert cron(config, "add", "--name", "tea", "--message", "Tea", "--at", "2026-11-22T17:00") == 0
        assert cron(config, "add", "--name", "off", "--message", "x", "--cron", "0 12 * * *", "--disabled") == 0
    log = RunLog(workspace / "cron")
    yesterday_9 = datetime(2026, 11, 22, 9, 0, tzinfo=PARIS).timestamp()
    log.mark("morning", last_slot=yesterday_9, last_start=yesterday_9 + 2, last_end=yesterday_9 + 9,
             last_outcome="ok")
    log.mark("water", last_slot=datetime(2026, 11, 23, 7, 20, tzinfo=PARIS).timestamp(),
             last_start=datetime(2026, 11, 23, 7, 20, 1, tzinfo=PARIS).timestamp(), last_outcome="error")
    log.mark("tea", last_start=datetime(2026, 11, 22, 17, 0, tzinfo=PARIS).timestamp(), last_outcome="ok",
             done=True)
    log.record(Run("morning", yesterday_9, yesterday_9 + 2, yesterday_9 + 9, "ok", message_id="4711"))
    before = snapshot(workspace)
    capsys.readouterr()
    with time_machine.travel(NOW, tick=False):
        assert cron(config, "list") == 0
    out = capsys.readouterr().out
    assert snapshot(workspace) == before
    blocks = split_blocks(out)
    assert "(config, enabled)" in blocks["morning"] and "next run  2026-11-23 09:00 CET" in blocks["morning"]
    assert "last run  2026-11-22 09:00 CET, ok" in blocks["morning"]
    assert "telegram:12345" in blocks["morning"]
    assert "(cli, enabled)" in blocks["water"] and "every" in blocks["water"]
    assert "next run  2026-11-23 08:20 CET" in blocks["water"]  # the phase of the last slot, not of now
    assert "last run  2026-11-23 07:20 CET, error" in blocks["water"]
    assert "next run  done" in blocks["tea"]
    assert "(cli, disabled)" in blocks["off"] and "disabled" in blocks["off"].split("next run")[1]


def split_blocks(out: str) -> dict[str, str]:
    blocks: dict[str, str] = {}
    name = ""
    for line in out.splitlines():
        if not line.startswith(" "):
            name = line.split()[0]
            blocks[name] = ""
        blocks[name] += line + "\n"
    return blocks


def test_remove_enable_disable(config: Path, workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cron(config, "add", "--name", "tea", "--message", "Tea", "--every", "60") == 0
    assert cron(config, "disable", "tea") == 0
    assert "Disabled cron job 'tea'" in capsys.readouterr().out
    assert stored(workspace)["tea"]["enabled"] is False
    before = snapshot(workspace / "cron")
    assert cron(config, "disable", "tea") == 0
    assert capsys.readouterr().out == "Cron job 'tea' is already disabled.\n"
    assert snapshot(workspace / "cron") == before  # not rewritten
    assert cron(config, "enable", "tea") == 0
    assert "Enabled cron job 'tea'" in capsys.readouterr().out
    assert stored(workspace)["tea"]["enabled"] is True
    assert cron(config, "remove", "tea") == 0
    assert "Removed cron job 'tea'" in capsys.readouterr().out
    assert yaml.safe_load((workspace / "cron" / "jobs.yaml").read_text()) == []


@pytest.mark.parametrize("action", ["remove", "enable", "disable"])
def test_config_jobs_and_unknown_names_are_refused(config: Path, capsys: pytest.CaptureFixture[str],
                                                   action: str) -> None:
    assert cron(config, action, "morning") == 2
    err = capsys.readouterr().err
    assert "defined in the config file" in err and str(config) in err and "edit or delete it there" in err
    assert cron(config, action, "coffee") == 2
    assert "No cron job named 'coffee'. Known jobs: morning" in capsys.readouterr().err
    assert cron(config, action) == 2
    assert f"reverie cron {action} NAME" in capsys.readouterr().err


def test_log(config: Path, workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cron(config, "log") == 0
    assert capsys.readouterr().out.strip() == "No runs yet."
    log = RunLog(workspace / "cron")
    slot = datetime(2026, 11, 22, 9, 0, tzinfo=PARIS).timestamp()
    log.record(Run("morning", slot, slot + 2, slot + 6.5, "ok", message_id="4711"))
    log.record(Run("water", slot, None, None, "missed", detail="3 slots missed while reverie was down"))
    log.record(Run("morning", None, slot + 100, slot + 101, "error", detail="the model is overloaded"))
    assert cron(config, "log") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert "morning" in lines[0] and "took 4.5 s" in lines[0] and "ok" in lines[0] and "message 4711" in lines[0]
    assert "water" in lines[1] and "missed" in lines[1] and "3 slots missed" in lines[1]
    assert "run by hand" in lines[2] and "the model is overloaded" in lines[2]
    assert cron(config, "log", "morning", "-n", "1") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and "error" in lines[0]
    assert cron(config, "log", "-n", "0") == 2
    capsys.readouterr()
    assert cron(config, "log", "water") == 0  # a removed job's runs still show
    assert "missed" in capsys.readouterr().out


def test_log_of_an_unknown_job_says_so(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cron(config, "log", "morning") == 0
    assert capsys.readouterr().out.strip() == "No runs yet."
    assert cron(config, "log", "coffee") == 2
    assert "No cron job named 'coffee'. Known jobs: morning" in capsys.readouterr().err


def test_a_name_starting_with_a_dash_is_refused(config: Path, workspace: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert cron(config, "add", "--name=-tea", "--message", "x", "--every", "60") == 2
    assert "no '-' first" in capsys.readouterr().err
    assert not (workspace / "cron" / "jobs.yaml").exists()


def test_a_bad_config_job_is_refused_before_anything_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, cron_jobs=[{"name": "j", "schedule": "0 9 * * 8", "message": "x"}])
    assert cron(config, "list") == 2
    assert "cron_jobs: Cron job 'j': Cron expression '0 9 * * 8'" in capsys.readouterr().err


def test_list_says_whether_an_overdue_one_shot_still_runs(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with time_machine.travel(datetime(2026, 11, 22, 12, 0, tzinfo=PARIS), tick=False):
        for name, at in (("tea", "2026-11-22T17:00"), ("cake", "2026-11-22T17:40")):
            assert cron(config, "add", "--name", name, "--message", "x", "--at", at, "--tz", "Europe/Paris") == 0
    capsys.readouterr()
    with time_machine.travel(datetime(2026, 11, 22, 18, 30, tzinfo=PARIS), tick=False):
        assert cron(config, "list") == 0
    blocks = split_blocks(capsys.readouterr().out)
    assert "next run  missed (due 2026-11-22 17:00 CET, beyond cron.catch_up_window)" in blocks["tea"]
    assert "next run  runs at the next start (due 2026-11-22 17:40 CET, within" in blocks["cake"]


class FakeDaemon:
    """Holds the workspace lock and answers `reverie cron run` requests like the scheduler does."""

    def __init__(self, workspace: Path, outcome: str, message_id: str | None, detail: str = "") -> None:
        workspace.mkdir(parents=True, exist_ok=True)
        self.lock, self.log = WorkspaceLock(workspace), RunLog(workspace / "cron")
        self.requests = workspace / "cron" / "requests"
        self.outcome, self.message_id, self.detail = outcome, message_id, detail
        self.seen: list[dict[str, Any]] = []
        self.modes: list[int] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)

    def __enter__(self) -> FakeDaemon:
        self.lock.acquire()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join(10)
        self.lock.release()

    def serve(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            files = sorted(self.requests.glob("*.json")) if self.requests.exists() else []
            if files:
                data = json.loads(files[0].read_text())
                self.modes.append(files[0].stat().st_mode & 0o777)
                files[0].unlink()
                self.seen.append(data)
                start = time.time()
                self.log.record(Run(data["job"], None, start, None, "running", request=data["id"]))
                self.log.record(Run("other", None, start, start, "ok", request="someone-else"))
                time.sleep(0.3)
                self.log.record(Run(data["job"], None, start, time.time(), self.outcome,  # type: ignore[arg-type]
                                    message_id=self.message_id, detail=self.detail, request=data["id"]))
                return
            time.sleep(0.02)


def test_run_through_the_daemon(config: Path, workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with FakeDaemon(workspace, "ok", "4711") as daemon:
        assert cron(config, "run", "morning") == 0
    out = capsys.readouterr().out
    assert "Ran 'morning': ok, delivered as message 4711." in out
    request = daemon.seen[0]
    assert request["job"] == "morning" and set(request) == {"id", "job", "time"}
    assert daemon.modes == [0o600]
    requests = workspace / "cron" / "requests"
    assert oct(requests.stat().st_mode & 0o777) == oct(0o700) and list(requests.iterdir()) == []


def test_a_failed_run_through_the_daemon_exits_1(config: Path, workspace: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with FakeDaemon(workspace, "error", None, "the model is overloaded"):
        assert cron(config, "run", "morning") == 1
    assert "error: the model is overloaded" in capsys.readouterr().out


def test_run_an_unknown_job(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cron(config, "run", "coffee") == 2
    assert "No cron job named 'coffee'. Known jobs: morning" in capsys.readouterr().err


def test_list_reports_a_damaged_entry_once(config: Path, workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workspace / "cron").mkdir(parents=True)
    (workspace / "cron" / "jobs.yaml").write_text("- {name: broken, every: 5}\n")
    assert cron(config, "list") == 0
    captured = capsys.readouterr()
    assert "morning" in captured.out and "broken" not in captured.out
    assert captured.err.count("entry 1 (broken)") == 1 and captured.err.startswith("reverie: ")


def llm_config(tmp_path: Path, fake: FakeLLM) -> Path:
    return write_config(tmp_path, cron_jobs=[MORNING], llm={
        "provider": "anthropic", "model": "claude-test", "api_key": "sk-ant-cron-000111", "base_url": fake.url,
        "max_retries": 0, "stream_retries": 0})


async def test_run_without_a_daemon_prints_the_reply_and_records_the_run(
        tmp_path: Path, workspace: Path, fake_llm: FakeLLM, capsys: pytest.CaptureFixture[str]) -> None:
    config = llm_config(tmp_path, fake_llm)
    fake_llm.script(Turn(text="Three pull requests merged."))
    assert await asyncio.to_thread(cron, config, "run", "morning") == 0
    captured = capsys.readouterr()
    assert captured.out == "Three pull requests merged.\n"
    assert "Not delivered to the chat" in captured.err
    state = RunLog(workspace / "cron").states()["morning"]
    assert state.last_outcome == "ok" and state.last_start and state.last_end and state.last_slot is None
    assert await asyncio.to_thread(cron, config, "list") == 0
    assert ", ok" in split_blocks(capsys.readouterr().out)["morning"].split("last run")[1]
    fake_llm.script(Turn(text="Nothing merged."))
    assert await asyncio.to_thread(cron, config, "run", "morning") == 0
    assert b"Three pull requests" not in fake_llm.requests[1].raw  # each run starts with a fresh context


async def test_run_without_a_daemon_with_nothing_to_send(
        tmp_path: Path, fake_llm: FakeLLM, capsys: pytest.CaptureFixture[str]) -> None:
    config = llm_config(tmp_path, fake_llm)
    fake_llm.script(Turn(text="[nothing to send]"))
    assert await asyncio.to_thread(cron, config, "run", "morning") == 0
    captured = capsys.readouterr()
    assert captured.out == "The agent had nothing to send.\n" and "Not delivered" not in captured.err


async def test_run_without_a_daemon_that_fails(
        tmp_path: Path, workspace: Path, fake_llm: FakeLLM, capsys: pytest.CaptureFixture[str]) -> None:
    config = llm_config(tmp_path, fake_llm)
    fake_llm.script(Fail(400, "invalid_request_error", "the prompt is too long"))
    assert await asyncio.to_thread(cron, config, "run", "morning") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("reverie: job 'morning' failed: ") and "Not delivered" not in captured.err
    assert RunLog(workspace / "cron").states()["morning"].last_outcome == "error"
