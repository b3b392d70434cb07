"""The cron jobs: ``cron_jobs`` from the config file, then ``<workspace>/cron/jobs.yaml`` (CLI and chat).

    store = JobStore(workspace, config.cron_jobs, config_path)
    jobs = store.load()                  # name -> Job, config jobs first; bad file entries in store.problems
    store.add(CronJob(name="tea", message="Tea is ready", at="2026-11-23T17:00"))
    store.set_enabled("tea", False)      # (job, changed): False when it already was
    store.remove("tea")
    if store.changed(): jobs = store.load()   # one stat: the daemon polls this

``jobs.yaml`` is a YAML list of mappings (``StoredJob``). Every write takes an exclusive lock on
``cron/jobs.lock``, re-reads the file under it and replaces the file atomically (0600; the folder is
0700), so the CLI, the chat tool and the daemon never lose each other's changes. Config jobs are
read-only here: they change in the config file.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError

from agent.atomic import write_atomic
from agent.config import Config, CronJob, DeliverTo
from agent.cron import expr
from agent.errors import ConfigError
from channels.base import scope_key

logger = logging.getLogger(__name__)

Source = Literal["config", "cli", "chat"]
_NEVER = (-1, -1)  # the stamp before the first load: changed() is True


class StoredJob(CronJob):
    """One entry of ``jobs.yaml``."""

    created: float  # epoch seconds
    source: Literal["cli", "chat"] = "cli"


@dataclass(frozen=True)
class Job:
    spec: CronJob
    source: Source
    created: float | None  # None for config jobs


class JobStore:
    def __init__(self, workspace: Path, config_jobs: list[CronJob], config_path: Path | None = None) -> None:
        self.folder = workspace / "cron"
        self.path, self.lock_path = self.folder / "jobs.yaml", self.folder / "jobs.lock"
        self.config_jobs = list(config_jobs)
        self.config_path = config_path
        self.problems: list[str] = []
        self._stamp: tuple[int, int] = _NEVER
        self._warned: set[str] = set()

    # reading

    def load(self) -> dict[str, Job]:
        """Every job by name: config jobs, then file jobs, in order. A bad config job raises ConfigError;
        a bad file entry is skipped, logged once and listed in ``self.problems``."""
        now = datetime.now().astimezone()
        entries, self._stamp, problem = self._read()  # first: a bad config job must not leave changed() True
        jobs: dict[str, Job] = {}
        for i, spec in enumerate(self.config_jobs):
            where = f"cron_jobs[{i}] ({spec.name})"
            if spec.name in jobs:
                raise ConfigError(f"{where}: another entry of cron_jobs has this name; give each job its own name.")
            try:
                expr.trigger_for(spec, now)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            jobs[spec.name] = Job(spec, "config", None)
        problems: list[str] = []
        if problem:
            problems.append(problem)
        for i, entry in enumerate(entries):
            job = self._entry_job(i, entry, jobs, now, problems)
            if job is not None:
                jobs[job.spec.name] = job
        self.problems = problems
        for text in problems:
            if text not in self._warned:
                self._warned.add(text)
                logger.warning("%s", text)
        return jobs

    def changed(self) -> bool:
        """Whether ``jobs.yaml`` changed since the last ``load()`` (one stat)."""
        return _stat(self.path) != self._stamp

    def _entry_job(self, i: int, entry: Any, jobs: dict[str, Job], now: datetime,
                   problems: list[str]) -> Job | None:
        name = entry.get("name") if isinstance(entry, dict) else None
        where = f"{self.path} entry {i + 1}" + (f" ({name})" if isinstance(name, str) else "")
        try:
            stored = StoredJob.model_validate(entry)
            expr.trigger_for(stored, now)
        except ValidationError as exc:
            problems.append(f"{where}: {_short(exc)}; skipped")
            return None
        except Exception as exc:  # ConfigError, or anything odd in a damaged entry: never fatal
            problems.append(f"{where}: {_first_line(exc).rstrip('.')}; skipped")
            return None
        if stored.name in jobs:
            other = "the config file" if jobs[stored.name].source == "config" else "an earlier entry"
            problems.append(f"{where}: {other} already defines a job named {stored.name!r}; skipped")
            return None
        return Job(stored, stored.source, stored.created)

    def _read(self) -> tuple[list[Any], tuple[int, int], str | None]:
        """The raw entries, the file's stamp and why the file as a whole is unusable (or None)."""
        try:
            with open(self.path, "rb") as fh:
                info = os.fstat(fh.fileno())
                raw = fh.read()
        except FileNotFoundError:
            return [], (0, 0), None
        except OSError as exc:
            return [], _stat(self.path), f"{self.path} is unreadable ({exc.strerror or exc}); its jobs are skipped"
        stamp = (info.st_mtime_ns, info.st_size)
        try:
            data = yaml.safe_load(raw.decode("utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            return [], stamp, f"{self.path} is not valid YAML ({_first_line(exc)}); its jobs are skipped"
        if data is None:
            return [], stamp, None
        if not isinstance(data, list):
            return [], stamp, f"{self.path} should hold a list of jobs; its jobs are skipped"
        return data, stamp, None

    # writing

    def add(self, spec: CronJob, source: Literal["cli", "chat"] = "cli") -> Job:
        """Validate ``spec`` and append it to ``jobs.yaml``; the name must be new."""
        _check_name(spec.name)
        now = datetime.now().astimezone()
        trigger = expr.trigger_for(spec, now)
        if spec.at is not None and expr.next_fire(trigger, now) is None:
            raise ConfigError(f"The time {spec.at} is in the past; give a later --at time.")
        self._refuse_config(spec.name, "add")
        fields = spec.model_dump(exclude={"created", "source"})
        stored = StoredJob(**fields, created=time.time(), source=source)

        def change(entries: list[Any]) -> None:
            if any(_name(e) == spec.name for e in entries):
                raise ConfigError(f"A cron job named {spec.name!r} already exists; pick another name "
                                  f"or remove it first (reverie cron remove {spec.name}).")
            entries.append(stored.model_dump(mode="json", exclude_none=True))

        self._edit(change)
        return Job(stored, source, stored.created)

    def remove(self, name: str) -> Job:
        """Delete a file job; the removed job."""
        self._refuse_config(name, "remove")
        found: list[Job] = []

        def change(entries: list[Any]) -> None:
            found.extend(self._pick(entries, name))
            entries[:] = [e for e in entries if _name(e) != name]

        self._edit(change)
        return found[0]

    def set_enabled(self, name: str, enabled: bool) -> tuple[Job, bool]:
        """Enable or disable a file job: the job, and whether it changed (the file is left alone if not)."""
        self._refuse_config(name, "enable" if enabled else "disable")
        found: list[Job] = []

        def change(entries: list[Any]) -> bool:
            job = self._pick(entries, name)[0]
            if job.spec.enabled is enabled:
                found.append(job)
                return False
            for entry in entries:
                if _name(entry) == name:
                    entry["enabled"] = enabled
            found.append(Job(job.spec.model_copy(update={"enabled": enabled}), job.source, job.created))
            return True

        changed = self._edit(change)
        return found[0], changed

    def _pick(self, entries: list[Any], name: str) -> list[Job]:
        """The job ``name`` among the raw ``entries``; ConfigError listing the known names if none."""
        for entry in entries:
            if _name(entry) == name:
                try:
                    stored = StoredJob.model_validate(entry)
                except ValidationError:  # a damaged entry can still be removed
                    return [Job(CronJob.model_construct(**{str(k): v for k, v in entry.items()}), "cli", None)]
                return [Job(stored, stored.source, stored.created)]
        known = [j.name for j in self.config_jobs] + [n for n in map(_name, entries) if n]
        listed = ", ".join(known) if known else "none yet"
        raise ConfigError(f"No cron job named {name!r}. Known jobs: {listed} (see reverie cron list).")

    def _refuse_config(self, name: str, verb: str) -> None:
        if any(j.name == name for j in self.config_jobs):
            where = f"the config file {self.config_path}" if self.config_path else "the config file (cron_jobs)"
            if verb == "add":
                raise ConfigError(f"A cron job named {name!r} is already defined in {where}; pick another name.")
            raise ConfigError(f"The cron job {name!r} is defined in {where}, so `reverie cron {verb}` cannot "
                              f"change it: edit or delete it there (enabled: true/false), then restart the daemon "
                              f"if it runs.")

    def _edit(self, change: Callable[[list[Any]], bool | None]) -> bool:
        """Apply ``change`` to the entries under the lock, then write them atomically, unless ``change``
        returned False (nothing to change); whether the file was written."""
        with self._locked():
            entries, _, problem = self._read()
            if problem:
                raise ConfigError(f"{problem}. Fix or move the file, then try again.")
            if change(entries) is False:
                return False
            write_atomic(self.path, yaml.safe_dump(entries, sort_keys=False, allow_unicode=True))
            return True

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the lock


def default_target(config: Config) -> DeliverTo | None:
    """The owner on the first configured channel, or None."""
    if not config.channels:
        return None
    channel = config.channels[0]
    owners: list[str] = getattr(config.owner, channel.type, [])
    return DeliverTo(channel=channel.label, chat=owners[0]) if owners else None


def note_key(config: Config, target: DeliverTo) -> str:
    """The conversation a delivered text is added to: the one that asked for the job, else the chat's.
    Where conversations are per person (``session_scope: user``), a chat whose id is a person's own
    (a direct chat on Telegram; the owner, the default target) is that person's conversation."""
    if target.session:
        return target.session
    channel = next((ch for ch in config.channels if ch.label == target.channel), None)
    if channel is not None and channel.session_scope == "user":  # a person's conversation spans threads
        people = {*channel.allow_from, *getattr(config.owner, channel.type, [])}
        if target.chat in people:
            return scope_key("user", channel.label, target.chat) or target.session_key
    return target.session_key


def parse_target(text: str, config: Config) -> DeliverTo:
    """``telegram:12345`` (channel label, colon, chat id) as a DeliverTo; the channel must be configured."""
    label, colon, chat = text.partition(":")
    label, chat = label.strip(), chat.strip()
    if not colon or not label or not chat:
        raise ConfigError(f"--deliver takes CHANNEL:CHAT, e.g. telegram:12345 (got {text!r}).")
    labels = [ch.label for ch in config.channels]
    if label not in labels:
        known = f"the configured channels are: {', '.join(labels)}" if labels else "no channels are configured"
        raise ConfigError(f"Unknown channel {label!r} in --deliver {text}: {known}.")
    return DeliverTo(channel=label, chat=chat)


def _check_name(name: str) -> None:
    if (name != name.strip() or any(not c.isprintable() for c in name) or "/" in name or len(name) > 100
            or name.startswith("-")):
        raise ConfigError(f"Invalid cron job name {name!r}: use up to 100 printable characters, no '/', "
                          "no leading or trailing spaces, and no '-' first.")


def _stat(path: Path) -> tuple[int, int]:
    try:
        info = path.stat()
    except FileNotFoundError:
        return (0, 0)
    return (info.st_mtime_ns, info.st_size)


def _name(entry: Any) -> str | None:
    name = entry.get("name") if isinstance(entry, dict) else None
    return name if isinstance(name, str) else None


def _short(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg'].removeprefix('Value error, ').rstrip('.')}"
                     for e in exc.errors())


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
