"""One daemon per workspace: an exclusive lock on ``<workspace>/reverie.lock`` holding the pid.

The kernel drops the lock when the process dies, even by SIGKILL, so a stale file never blocks a start.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from agent.errors import ReverieError


class AlreadyRunning(ReverieError):
    def __init__(self, workspace: Path, pid: int | None) -> None:
        who = f"pid {pid}" if pid else "another process"
        super().__init__(f"reverie is already running for {workspace} ({who}). Stop it first "
                         f"(kill {pid or '<pid>'}, or systemctl --user stop reverie), or use another workspace.")
        self.pid = pid


class WorkspaceLock:
    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.path = workspace / "reverie.lock"
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(handle)
            handle.close()
            raise AlreadyRunning(self.workspace, pid) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the lock
            self._file = None


def running_pid(workspace: Path) -> int | None:
    """The pid of the daemon holding ``workspace``, or None if none runs."""
    path = workspace / "reverie.lock"
    if not path.exists():
        return None
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(handle) or -1
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None


def _read_pid(handle: IO[str]) -> int | None:
    handle.seek(0)
    text = handle.read().strip()
    return int(text) if text.isdigit() else None
