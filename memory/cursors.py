"""How far Dream has read each session file: ``<workspace>/state/dream.json``.

    state = load_state(workspace / "state" / "dream.json")
    state.cursors["telegram:123@1767225600.0"]    # byte offset of the first line not yet consolidated
    is_consolidated(path, state)                    # every line of this session file has been read
    save_state(path, state)                         # atomic: a crash leaves the old or the new file

A session file is named by its header (key and creation time), not by its file name, so a file that
``/new`` renamed keeps its cursor, and a fresh file for the same key starts at 0. Session files are
append-only, so a byte offset marks exactly which lines were consolidated.

``pending`` holds a run that was about to commit (see ``memory.dream``): after a crash, the next run
finds out whether that commit landed and adopts its cursors, so no message is consolidated twice or
skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.atomic import write_atomic
from agent.errors import MemoryStoreError


@dataclass
class DreamState:
    cursors: dict[str, int] = field(default_factory=dict)  # identity -> byte offset
    times: dict[str, float] = field(default_factory=dict)  # identity -> time of the newest message read
    pending: dict[str, Any] | None = None  # {"base", "sha256", "message", "cursors"} of a run about to commit
    last_run: float | None = None  # when the last run finished (time.time()), whatever its outcome


def identity(path: Path) -> str | None:
    """``key@created`` from the file's header line; None when there is no readable header."""
    try:
        with path.open("rb") as fh:
            first = fh.readline(1 << 16)
        rec = json.loads(first)
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get("type") != "header" or not isinstance(rec.get("key"), str):
        return None
    return f"{rec['key']}@{rec.get('created')}"


def is_consolidated(path: Path, state: DreamState) -> bool:
    """True when Dream has read every line of ``path`` (a file without a header has nothing to read)."""
    ident = identity(path)
    if ident is None:
        return True
    try:
        return state.cursors.get(ident, 0) >= path.stat().st_size
    except OSError:
        return False


def load_state(path: Path) -> DreamState:
    """The saved state; an empty one when the file does not exist yet."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return DreamState()
    except (OSError, ValueError) as exc:
        raise MemoryStoreError(f"Dream's state file {path} is unreadable ({exc}). Fix it, or move it away: "
                               "the next run then reads every conversation again.") from exc
    if not isinstance(data, dict) or not isinstance(data.get("cursors", {}), dict):
        raise MemoryStoreError(f"Dream's state file {path} is not what reverie wrote. Move it away: the next "
                               "run then reads every conversation again.")
    cursors = {str(k): int(v) for k, v in data.get("cursors", {}).items() if isinstance(v, int)}
    times = data.get("times")
    times = times if isinstance(times, dict) else {}
    pending = data.get("pending") if isinstance(data.get("pending"), dict) else None
    last = data.get("last_run")
    return DreamState(cursors, {str(k): float(v) for k, v in times.items() if isinstance(v, int | float)},
                      pending, float(last) if isinstance(last, int | float) else None)


def save_state(path: Path, state: DreamState) -> None:
    """Write ``state`` atomically (temporary file, fsync, rename), readable by the owner only."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = json.dumps({"version": 1, "cursors": state.cursors, "times": state.times, "pending": state.pending,
                       "last_run": state.last_run}, ensure_ascii=False, indent=1)
    try:
        write_atomic(path, data)
    except OSError as exc:
        raise MemoryStoreError(f"Could not save Dream's state to {path}: {exc.strerror or exc}. "
                               "Free some disk space or fix the folder's permissions.") from exc
