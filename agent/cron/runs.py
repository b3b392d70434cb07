"""What cron did: every run in ``<workspace>/cron/runs.jsonl``, each job's last slot in ``cron/state.json``.

    log = RunLog(workspace / "cron")
    log.mark("morning", last_slot=slot.timestamp(), running="cron:morning:2026-12-04T09:00:00+01:00")
    log.record(Run("morning", scheduled, start, end, "ok", message_id="4711"))
    log.runs("morning", limit=20)         # newest last
    log.states()["morning"].last_slot     # never changed by a read

The state is written (atomically) before a run is published, so a restart never repeats a slot that
started: the run itself is journaled by the gateway and finished by the next start if it was cut.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agent.atomic import write_atomic
from agent.errors import ConfigError

Outcome = Literal["ok", "error", "skipped", "missed", "running"]


@dataclass
class Run:
    job: str
    scheduled: float | None  # the slot (epoch seconds); None for `reverie cron run`
    start: float | None
    end: float | None
    outcome: Outcome
    message_id: str | None = None  # the platform's id of the delivered message
    detail: str = ""  # why: the error, "nothing to send", "3 slots missed while reverie was down", ...
    request: str | None = None  # the id of a `reverie cron run` request this run answers


@dataclass
class JobState:
    last_slot: float | None = None  # the newest slot that started (or was recorded as missed)
    last_start: float | None = None
    last_end: float | None = None
    last_outcome: str | None = None
    running: str | None = None  # the message id of a run that started and has not ended
    done: bool = False  # a one-shot job that ran or was missed: it never fires again
    seen: float | None = None  # when the scheduler first saw the job (no catch-up before that)
    fingerprint: str | None = None  # the schedule it was seen with: a changed schedule starts afresh


class RunLog:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.runs_path, self.state_path = folder / "runs.jsonl", folder / "state.json"
        self._lock = threading.Lock()

    def record(self, run: Run) -> None:
        """Append one run to ``runs.jsonl`` (0600)."""
        line = json.dumps(dataclasses.asdict(run), ensure_ascii=False, separators=(",", ":")) + "\n"
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.runs_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)

    def runs(self, job: str | None = None, limit: int = 50) -> list[Run]:
        """The newest ``limit`` runs (of ``job``), oldest first. A damaged line is skipped."""
        try:
            lines = self.runs_path.read_bytes().splitlines()
        except FileNotFoundError:
            return []
        out: list[Run] = []
        for raw in reversed(lines):
            try:
                run = Run(**json.loads(raw))
            except (ValueError, TypeError):
                continue
            if job is None or run.job == job:
                out.append(run)
                if len(out) >= limit:
                    break
        return out[::-1]

    def states(self) -> dict[str, JobState]:
        """Every job's state; reading never changes anything."""
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"The cron state file {self.state_path} is unreadable ({exc}). Move it away: "
                              "jobs then start fresh, without catch-up runs.") from exc
        jobs = data.get("jobs", {}) if isinstance(data, dict) else None
        if not isinstance(jobs, dict):
            raise ConfigError(f"The cron state file {self.state_path} is not what reverie wrote. Move it away: "
                              "jobs then start fresh, without catch-up runs.")
        fields = {f.name for f in dataclasses.fields(JobState)}
        return {str(name): JobState(**{k: v for k, v in value.items() if k in fields})
                for name, value in jobs.items() if isinstance(value, dict)}

    def mark(self, job: str, **changes: Any) -> JobState:
        """Change some of ``job``'s state fields and save the whole state atomically; the new state."""
        with self._lock:
            states = self.states()
            state = dataclasses.replace(states.get(job, JobState()), **changes)
            states[job] = state
            self._save(states)
            return state

    def mark_many(self, jobs: dict[str, dict[str, Any]]) -> None:
        """``mark`` for several jobs in one write: ``{job: {field: value, ...}}``."""
        if not jobs:
            return
        with self._lock:
            states = self.states()
            for job, changes in jobs.items():
                states[job] = dataclasses.replace(states.get(job, JobState()), **changes)
            self._save(states)

    def forget(self, job: str) -> None:
        """Drop a removed job's state (its runs stay in the log)."""
        with self._lock:
            states = self.states()
            if states.pop(job, None) is not None:
                self._save(states)

    def _save(self, states: dict[str, JobState]) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = json.dumps({"version": 1, "jobs": {k: dataclasses.asdict(v) for k, v in states.items()}},
                          ensure_ascii=False, indent=1)
        write_atomic(self.state_path, data)
