"""Old conversations move to ``<workspace>/sessions/archive/<file name>.gz``, never deleted.

    archived = archive_sessions(root, 30, lambda path: is_consolidated(path, state))
    old_sessions(root, 30)              # the files old enough, whether or not Dream has read them
    parsed = read_archived(archived[0]) # the same Parsed as sessions.reader.read_session
    archived_key(archived[0])           # the key in its header, without unpacking the whole file

A file qualifies when it sits directly in ``root`` and ends in ``.jsonl`` (live sessions and the
``<name>.<stamp>.jsonl`` files ``/new`` leaves; quarantined ``.corrupt-`` files do not), was last
written more than ``older_than_days`` ago, and ``consolidated(path)`` says Dream has read all of it.

A crash never loses a line: the copy is written under a temporary name in ``archive/``, fsynced and
renamed, and only then is the original unlinked, provided it did not grow meanwhile. The archive
keeps the original's modification time, so "last activity" stays true. A name already taken gets
``-2``, ``-3``, ... before ``.jsonl.gz``. The folder is 0700 and the files 0600.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

from agent.errors import SessionError
from sessions.reader import Parsed, Unreadable, parse_bytes, parse_header

logger = logging.getLogger(__name__)

ARCHIVE = "archive"
DAY = 86400.0


def old_sessions(root: Path, older_than_days: float, now: float | None = None) -> list[Path]:
    """Session files directly in ``root`` last written more than ``older_than_days`` ago, oldest first.

    Empty when ``older_than_days <= 0`` (archiving is off).
    """
    if older_than_days <= 0:
        return []
    cutoff = (time.time() if now is None else now) - older_than_days * DAY
    found = []
    try:
        paths = list(root.glob("*.jsonl"))
    except OSError:
        return []
    for path in paths:
        try:
            info = path.stat()
        except OSError:
            continue
        if info.st_mtime < cutoff and path.is_file():
            found.append((info.st_mtime, path))
    return [path for _, path in sorted(found)]


def archive_sessions(root: Path, older_than_days: float, consolidated: Callable[[Path], bool],
                     now: float | None = None) -> list[Path]:
    """Gzip every old, consolidated session file into ``root/archive``; the paths of the archives.

    SessionError when the operating system refuses a read or a write (the files archived before it
    stay archived; the one being archived stays where it was).
    """
    archived = []
    for path in old_sessions(root, older_than_days, now):
        if not consolidated(path):
            continue
        target = _archive_file(path, root / ARCHIVE)
        if target is not None:
            archived.append(target)
    return archived


def _archive_file(path: Path, folder: Path) -> Path | None:
    """Gzip ``path`` into ``folder`` and unlink it; the archive, or None if ``path`` changed meanwhile."""
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise SessionError(f"Could not create the archive folder {folder}: {exc.strerror or exc}. "
                           "Check the permissions of its parent folder and that the disk is not full.") from exc
    try:
        before = _copy(path, fd)
        target = _free_name(folder, path.name)
        os.rename(tmp, target)
        _fsync_dir(folder)
    except FileNotFoundError:
        Path(tmp).unlink(missing_ok=True)
        return None  # gone meanwhile (renamed by /new, or archived by another process)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise SessionError(f"Could not archive the session file {path} into {folder}: {exc.strerror or exc}. "
                           "Free some disk space or fix the folder's permissions.") from exc
    try:
        after = path.stat()
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            logger.info("Session file %s changed while being archived; kept it", path)
            target.unlink()
            return None
        path.unlink()
    except OSError as exc:
        raise SessionError(f"Archived {path} as {target}, but could not remove the original: "
                           f"{exc.strerror or exc}. Remove one of the two by hand.") from exc
    return target


def _copy(path: Path, fd: int) -> os.stat_result:
    """Gzip ``path`` into the open file ``fd`` (closed here) and fsync it; the source's stat from before.

    The copy gets the source's modification time.
    """
    with os.fdopen(fd, "wb") as raw:
        with path.open("rb") as src:
            before = os.fstat(src.fileno())
            with gzip.GzipFile(filename=path.name, mode="wb", fileobj=raw, mtime=int(before.st_mtime)) as gz:
                shutil.copyfileobj(src, gz, 1 << 20)
        raw.flush()
        os.fsync(raw.fileno())
        os.utime(raw.fileno(), ns=(before.st_atime_ns, before.st_mtime_ns))
    return before


def _free_name(folder: Path, name: str) -> Path:
    """``folder/<name>.gz``, or ``<stem>-2.jsonl.gz``, ``-3``, ... when taken."""
    candidate, stem, n = folder / f"{name}.gz", name.removesuffix(".jsonl"), 1
    while candidate.exists():
        n += 1
        candidate = folder / f"{stem}-{n}.jsonl.gz"
    return candidate


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_archived(path: Path) -> Parsed:
    """Unpack and parse an archived session; Unreadable when it is no gzip or has no header line.

    OSError when it cannot be read at all.
    """
    try:
        with gzip.open(path, "rb") as fh:
            data = fh.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise Unreadable(f"not a complete gzip file ({exc})") from None
    return parse_bytes(data)


def archived_key(path: Path) -> str | None:
    """The key in an archived session's header; None when it cannot be read."""
    try:
        with gzip.open(path, "rb") as fh:
            first = fh.readline(1 << 16)
        return parse_header(first.rstrip(b"\n"))
    except (OSError, EOFError, zlib.error, Unreadable):
        return None
