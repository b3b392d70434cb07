"""Replacing a small state file so that a crash leaves the old or the new version, never half of one.

    write_atomic(workspace / "cron" / "state.json", text)   # OSError when the disk refuses

A temporary file (mode 0600) in the same folder, written, fsynced, then renamed over the target.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
