"""JobStore: config jobs plus ``<workspace>/cron/jobs.yaml``; default_target and parse_target."""

from __future__ import annotations

import logging
import stat
import threading
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine
import yaml
from pydantic import ValidationError

from agent.config import Config, CronJob, DeliverTo
from agent.cron.jobs import Job, JobStore, StoredJob, default_target, note_key, parse_target
from agent.errors import ConfigError

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=ZoneInfo("Europe/Paris"))
MORNING = CronJob(name="morning", message="Summarize today's GitHub activity", schedule="0 9 * * *")
TARGET = DeliverTo(channel="telegram", chat="12345")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return tmp_path / "workspace"


@pytest.fixture
def store(workspace: Path, tmp_path: Path) -> JobStore:
    return JobStore(workspace, [MORNING], tmp_path / "config.yaml")


def job(name: str, **trigger: object) -> CronJob:
    return CronJob(name=name, message=f"the {name} message", deliver_to=TARGET, **trigger or {"every": 3600})


def entries(store: JobStore) -> list[dict[str, object]]:
    data = yaml.safe_load(store.path.read_text())
    assert isinstance(data, list)
    return data


def test_config_jobs_come_first_then_file_jobs_in_order(store: JobStore) -> None:
    assert store.load() == {"morning": Job(MORNING, "config", None)}
    before = time.time()
    tea = store.add(job("tea", schedule="0 17 * * 1-5"))
    water = store.add(job("water"), source="chat")
    assert tea.source == "cli" and water.source == "chat"
    assert tea.created is not None and before <= tea.created <= time.time()
    jobs = store.load()
    assert list(jobs) == ["morning", "tea", "water"]
    assert jobs["tea"] == tea and jobs["water"] == water
    assert isinstance(jobs["tea"].spec, StoredJob) and jobs["tea"].spec.deliver_to == TARGET
    assert [e["name"] for e in entries(store)] == ["tea", "water"]
    assert entries(store)[1]["source"] == "chat" and "timezone" not in entries(store)[1]
    assert store.problems == []


def test_files_and_folder_are_private(store: JobStore, workspace: Path) -> None:
    store.add(job("tea"))
    folder = workspace / "cron"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.lock_path.stat().st_mode) == 0o600
    assert sorted(p.name for p in folder.iterdir()) == ["jobs.lock", "jobs.yaml"]  # no temp file left


def test_remove_and_enable_disable(store: JobStore) -> None:
    store.add(job("tea"))
    store.add(job("water"))
    disabled, changed = store.set_enabled("tea", False)
    assert changed and disabled.spec.enabled is False and disabled.spec.name == "tea"
    assert store.load()["tea"].spec.enabled is False
    assert store.set_enabled("tea", True)[0].spec.enabled is True
    assert store.load()["tea"].spec.enabled is True
    removed = store.remove("tea")
    assert removed.spec.name == "tea" and removed.source == "cli"
    assert list(store.load()) == ["morning", "water"]


def test_config_jobs_cannot_be_changed_here(store: JobStore, tmp_path: Path) -> None:
    for change in (lambda: store.remove("morning"), lambda: store.set_enabled("morning", False)):
        with pytest.raises(ConfigError, match="defined in the config file") as info:
            change()
        assert str(tmp_path / "config.yaml") in str(info.value) and "edit or delete it there" in str(info.value)
    with pytest.raises(ConfigError, match="already defined in the config file"):
        store.add(job("morning"))
    assert not store.path.exists()


def test_without_a_config_path_the_error_still_says_where(workspace: Path) -> None:
    with pytest.raises(ConfigError, match=r"the config file \(cron_jobs\)"):
        JobStore(workspace, [MORNING]).remove("morning")


def test_names_are_unique(store: JobStore) -> None:
    store.add(job("tea"))
    with pytest.raises(ConfigError, match="'tea' already exists"):
        store.add(job("tea", schedule="0 9 * * *"))
    assert len(entries(store)) == 1


def test_unknown_names_list_the_known_ones(store: JobStore) -> None:
    store.add(job("tea"))
    for change in (lambda: store.remove("coffee"), lambda: store.set_enabled("coffee", True)):
        with pytest.raises(ConfigError, match=r"No cron job named 'coffee'\. Known jobs: morning, tea"):
            change()


@pytest.mark.parametrize("trigger", [{"schedule": "61 * * * *"}, {"schedule": "0 9 * *"},
                                     {"schedule": "0 9 * * *", "timezone": "Mars/Olympus_Mons"},
                                     {"at": "the day after tomorrow"}, {"at": "2026-11-22T17:00"}])
def test_invalid_jobs_are_refused(store: JobStore, trigger: dict[str, object]) -> None:
    with time_machine.travel(NOW, tick=False), pytest.raises(ConfigError):
        store.add(job("bad", **trigger))
    assert not store.path.exists()


def test_a_one_shot_in_the_future_is_accepted(store: JobStore) -> None:
    with time_machine.travel(NOW, tick=False):
        added = store.add(job("tea", at="2026-11-23T17:00", timezone="Europe/Paris"))
    assert added.created == NOW.timestamp()


def test_setting_the_same_state_again_leaves_the_file_alone(store: JobStore) -> None:
    store.add(job("tea"))
    before = (store.path.read_bytes(), store.path.stat().st_mtime_ns)
    same, changed = store.set_enabled("tea", True)
    assert not changed and same.spec.enabled is True
    assert (store.path.read_bytes(), store.path.stat().st_mtime_ns) == before


@pytest.mark.parametrize("every", [0, -5, 0.5, float("inf"), float("nan"), 1e30, 315_360_001])
def test_every_must_be_finite_from_one_second_to_ten_years(every: float) -> None:
    with pytest.raises(ValidationError, match="every must be a number of seconds from 1 to 315360000"):
        job("bad", every=every)
    assert job("ok", every=315_360_000).every == 315_360_000


def test_odd_names_are_refused(store: JobStore) -> None:
    for name in (" tea", "tea\nx", "a/b", "-tea", "--help"):
        with pytest.raises(ConfigError, match="Invalid cron job name"):
            store.add(job(name))


def test_a_bad_config_job_names_its_entry(workspace: Path) -> None:
    bad = CronJob(name="nightly", message="x", schedule="0 25 * * *")
    with pytest.raises(ConfigError, match=r"cron_jobs\[1\] \(nightly\): "):
        JobStore(workspace, [MORNING, bad]).load()
    with pytest.raises(ConfigError, match=r"cron_jobs\[1\] \(morning\): .*own name"):
        JobStore(workspace, [MORNING, MORNING]).load()


def test_damaged_entries_are_skipped_and_reported_once(store: JobStore, caplog: pytest.LogCaptureFixture) -> None:
    store.add(job("tea"))
    damaged = [*entries(store), {"name": "nomessage", "every": 60, "created": 1.0},
               {"name": "badcron", "message": "x", "schedule": "0 9 * * 8", "created": 1.0},
               {"name": "morning", "message": "x", "every": 60, "created": 1.0}, "just text",
               {"name": "tea", "message": "again", "every": 60, "created": 1.0}]
    store.path.write_text(yaml.safe_dump(damaged))
    with caplog.at_level(logging.WARNING, logger="agent.cron.jobs"):
        assert list(store.load()) == ["morning", "tea"]
        assert list(store.load()) == ["morning", "tea"]
    assert len(store.problems) == 5
    assert not any(".;" in p or p.endswith("..") for p in store.problems), store.problems
    assert "entry 2 (nomessage)" in store.problems[0] and "message" in store.problems[0]
    assert "entry 3 (badcron)" in store.problems[1]
    assert "entry 4 (morning)" in store.problems[2] and "config file" in store.problems[2]
    assert "entry 6 (tea)" in store.problems[4]
    assert len(caplog.records) == 5  # once each, though loaded twice
    store.remove("nomessage")  # a damaged entry can still be removed
    assert len(entries(store)) == 5


def test_no_damaged_entry_is_ever_fatal(store: JobStore) -> None:
    store.folder.mkdir(parents=True)
    odd = [{"name": "inf", "message": "x", "every": float("inf"), "created": 1.0},
           {"name": "huge", "message": "x", "every": "1e30", "created": 1.0},
           {"name": "nan", "message": "x", "every": float("nan"), "created": 1.0},
           {1: "int key", "name": "intkey", "message": "x", "every": 60, "created": 1.0},
           {"name": "far", "message": "x", "at": "9999-12-31T23:59:59+00:00", "timezone": "Pacific/Kiritimati",
            "created": 1.0},
           {"name": "ok", "message": "x", "every": 60, "created": 1.0}]
    store.path.write_text(yaml.safe_dump(odd))
    jobs = store.load()
    assert "ok" in jobs and not {"inf", "huge", "nan", "intkey"} & set(jobs)
    assert all(p.endswith("; skipped") for p in store.problems) and len(store.problems) >= 4
    store.remove("intkey")  # a damaged entry can still be removed


def test_a_bad_config_job_does_not_leave_changed_true(workspace: Path) -> None:
    bad = JobStore(workspace, [CronJob(name="nightly", message="x", schedule="0 9 * * 8")])
    with pytest.raises(ConfigError):
        bad.load()
    assert not bad.changed()  # the daemon's poll would otherwise reload (and log) every 2 s


def test_an_unreadable_file_is_a_problem_and_is_never_overwritten(store: JobStore) -> None:
    store.folder.mkdir(parents=True)
    store.path.write_text("- name: [unclosed\n")
    assert list(store.load()) == ["morning"]
    assert len(store.problems) == 1 and "not valid YAML" in store.problems[0]
    with pytest.raises(ConfigError, match="Fix or move the file"):
        store.add(job("tea"))
    assert store.path.read_text() == "- name: [unclosed\n"
    store.path.write_text("name: tea\n")
    store.load()
    assert "list of jobs" in store.problems[0]


def test_changed_sees_writes_by_another_store(store: JobStore, workspace: Path) -> None:
    assert store.changed()  # never loaded
    store.load()
    assert not store.changed()
    other = JobStore(workspace, [MORNING])
    other.add(job("tea"))
    assert store.changed()
    assert "tea" in store.load()
    assert not store.changed()
    other.set_enabled("tea", False)
    assert store.changed()
    store.load()
    other.remove("tea")
    assert store.changed()
    assert list(store.load()) == ["morning"] and not store.changed()


def test_concurrent_writers_lose_nothing(workspace: Path) -> None:
    def add(i: int) -> None:
        JobStore(workspace, []).add(job(f"job{i}"))

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(JobStore(workspace, []).load()) == sorted(f"job{i}" for i in range(8))


def config(**data: object) -> Config:
    return Config.model_validate(data)


def test_default_target_is_the_owner_on_the_first_channel() -> None:
    channels = [{"type": "discord", "token": "d-token", "name": "home"}, {"type": "telegram", "token": "t-token"}]
    assert default_target(config(channels=channels, owner={"discord": [42, 43], "telegram": ["12345"]})) == \
        DeliverTo(channel="home", chat="42")
    assert default_target(config(channels=channels, owner={"telegram": ["12345"]})) is None
    assert default_target(config(owner={"telegram": ["12345"]})) is None


def test_parse_target() -> None:
    cfg = config(channels=[{"type": "telegram", "token": "t-token"}, {"type": "slack", "bot_token": "xoxb-1"}])
    assert parse_target("telegram:12345", cfg) == TARGET
    assert parse_target("slack:C01:thread", cfg) == DeliverTo(channel="slack", chat="C01:thread")
    with pytest.raises(ConfigError, match="configured channels are: telegram, slack"):
        parse_target("discord:1", cfg)
    for text in ("telegram", "telegram:", ":12345"):
        with pytest.raises(ConfigError, match="CHANNEL:CHAT"):
            parse_target(text, cfg)
    with pytest.raises(ConfigError, match="no channels are configured"):
        parse_target("telegram:1", config())


def test_what_a_job_sent_is_noted_in_the_conversation_its_turns_read() -> None:
    per_person = config(channels=[{"type": "telegram", "token": "t-token", "session_scope": "user",
                                   "allow_from": ["555"]}], owner={"telegram": ["12345"]})
    per_chat = config(channels=[{"type": "telegram", "token": "t-token"}], owner={"telegram": ["12345"]})
    assert note_key(per_chat, DeliverTo(channel="telegram", chat="12345")) == "telegram:12345"
    assert note_key(per_chat, DeliverTo(channel="telegram", chat="-100", thread="7")) == "telegram:-100:7"
    assert note_key(per_person, DeliverTo(channel="telegram", chat="12345")) == "telegram:user:12345"  # the owner
    assert note_key(per_person, DeliverTo(channel="telegram", chat="555", thread="3")) == "telegram:user:555"
    assert note_key(per_person, DeliverTo(channel="telegram", chat="-100")) == "telegram:-100"  # a group
    asked = DeliverTo(channel="telegram", chat="-100", session="telegram:user:555")  # asked for in the group
    assert note_key(per_person, asked) == "telegram:user:555"
