"""Old conversations move to ``<workspace>/sessions/archive/<file name>.gz``, never deleted.

    archived = archive_sessions(root, 30, lambda path: is_consolidated(path, state))
    old_sessions(root, 30)              # the files old enough, whether or not Dream has read them
    parsed = read_archived(archived[0]) # the same Parsed as sessions.reader.read_session
    archived_key(archived[0])           # the key in its header, without unpacking the whole file

A file qualifies when it sits directly in ``root`` and ends in ``.jsonl`` (live sessions and the
``<name>.<stamp>.jsonl`` files ``/new`` leaves; quarantined ``.corrupt-`` files do not), was last
written more than ``older_than_days`` ago, and ``consolidated(path)`` says Dream has read all of it.

A crash never loses a line: the file is first renamed to ``<name>.jsonl.archiving`` (so a message
arriving now starts a fresh session file instead), the copy is written under a temporary name in
``archive/``, fsynced and renamed, and only then is the original unlinked. The next run finishes
what a crash interrupted. The archive
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
ASIDE = ".archiving"  # a session file being archived: moved aside first, so nothing can be appended to it
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
    stay archived; the one being archived is finished by the next call).
    """
    folder = root / ARCHIVE
    archived = [_finish(aside, folder) for aside in _leftovers(root, folder)]
    for path in old_sessions(root, older_than_days, now):
        if not consolidated(path):
            continue
        aside = path.with_name(path.name + ASIDE)
        try:
            os.rename(path, aside)  # from here on, a new line for this session starts a fresh file
        except FileNotFoundError:
            continue  # gone meanwhile (renamed by /new, or archived by another process)
        except OSError as exc:
            raise SessionError(f"Could not move the session file {path} aside to archive it: "
                               f"{exc.strerror or exc}. Check the permissions of {root}.") from exc
        try:
            archived.append(_finish(aside, folder))
        except SessionError:
            if not path.exists():  # nothing new started meanwhile: put it back as it was
                os.rename(aside, path)
            raise
    return archived


def _leftovers(root: Path, folder: Path) -> list[Path]:
    """Files an interrupted run moved aside (they are finished now); its temporary copies are removed."""
    for tmp in _glob(folder, ".*.tmp"):
        tmp.unlink(missing_ok=True)
    return sorted(_glob(root, f"*.jsonl{ASIDE}"))


def _glob(folder: Path, pattern: str) -> list[Path]:
    try:
        return list(folder.glob(pattern))
    except OSError:
        return []


def _finish(aside: Path, folder: Path) -> Path:
    """Gzip the moved-aside file into ``folder`` and unlink it; the archive."""
    name = aside.name.removesuffix(ASIDE)
    done = folder / f"{name}.gz"
    if done.exists() and _same(done, aside):  # a crash came after the archive was written
        aside.unlink()
        return done
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise SessionError(f"Could not create the archive folder {folder}: {exc.strerror or exc}. "
                           "Check the permissions of its parent folder and that the disk is not full.") from exc
    try:
        _copy(aside, fd)
        target = _free_name(folder, name)
        os.rename(tmp, target)
        _fsync_dir(folder)
        aside.unlink()
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise SessionError(f"Could not archive the session file {aside} into {folder}: {exc.strerror or exc}. "
                           "Free some disk space or fix the folder's permissions; the next archive run "
                           "finishes it.") from exc
    return target


def _same(archive: Path, path: Path) -> bool:
    try:
        with gzip.open(archive, "rb") as fh:
            return fh.read() == path.read_bytes()
    except (OSError, EOFError, zlib.error):
        return False


def _copy(path: Path, fd: int) -> None:
    """Gzip ``path`` into the open file ``fd`` (closed here) and fsync it, with the source's modification time.

    A write that was already under way when the file was moved aside lands in it; the copy is made
    again until the file stops growing, so such a line is never lost.
    """
    with os.fdopen(fd, "wb") as raw:
        for _ in range(10):
            raw.seek(0)
            raw.truncate()
            with path.open("rb") as src:
                before = os.fstat(src.fileno())
                with gzip.GzipFile(filename=path.name, mode="wb", fileobj=raw, mtime=int(before.st_mtime)) as gz:
                    shutil.copyfileobj(src, gz, 1 << 20)
                copied = src.tell()
            if path.stat().st_size == copied:
                break
        raw.flush()
        os.fsync(raw.fileno())
        os.utime(raw.fileno(), ns=(before.st_atime_ns, before.st_mtime_ns))


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
