"""Archiving old session files: what qualifies, what the archive holds, and what is never touched."""

from __future__ import annotations

import errno
import gzip
import os
import stat
import time
from pathlib import Path

import pytest

from agent.errors import SessionError
from agent.types import Message
from memory.cursors import DreamState, identity, is_consolidated, load_state, save_state
from sessions import SessionStore
from sessions.archive import archive_sessions, archived_key, old_sessions, read_archived
from sessions.reader import Unreadable, parse_bytes, read_session

DAY = 86400.0
NOW = time.time()


def write(root: Path, key: str, *texts: str, age_days: float = 0.0) -> Path:
    """A session file for ``key`` holding ``texts``, last written ``age_days`` ago."""
    session = SessionStore(root).get(key)
    session.append(*(Message.user_text(t, time=1767225600.0) for t in texts))
    age(session.path, age_days)
    return session.path


def age(path: Path, days: float) -> None:
    stamp = NOW - days * DAY
    os.utime(path, (stamp, stamp))


def consolidate(state_file: Path, *paths: Path) -> DreamState:
    """What Dream records once it has read every line of ``paths``."""
    state = load_state(state_file)
    for path in paths:
        ident = identity(path)
        assert ident is not None
        state.cursors[ident] = path.stat().st_size
    save_state(state_file, state)
    return load_state(state_file)


def everything(path: Path) -> bool:
    return True


def test_old_consolidated_files_are_gzipped_exactly_and_the_original_removed(tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    path = write(root, "telegram:1", "hello", "ünïcode \u2028 line", age_days=40)
    original, mtime = path.read_bytes(), path.stat().st_mtime_ns
    state = consolidate(tmp_path / "state" / "dream.json", path)
    archived = archive_sessions(root, 30, lambda p: is_consolidated(p, state), now=NOW)
    assert archived == [root / "archive" / "telegram%3A1.jsonl.gz"]
    assert not path.exists()
    assert gzip.decompress(archived[0].read_bytes()) == original
    assert archived[0].stat().st_mtime_ns == mtime  # "last activity" survives
    assert stat.S_IMODE(archived[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "archive").stat().st_mode) == 0o700
    assert [p.name for p in (root / "archive").iterdir()] == ["telegram%3A1.jsonl.gz"]  # no temp file left
    parsed = read_archived(archived[0])
    assert parsed.header_key == "telegram:1"
    assert [m.text for m in parsed.messages] == ["hello", "ünïcode \u2028 line"]
    assert archived_key(archived[0]) == "telegram:1"


def test_new_or_unconsolidated_files_stay(tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    fresh = write(root, "telegram:new", "hi", age_days=29)
    unread = write(root, "telegram:unread", "hi", age_days=40)
    half = write(root, "telegram:half", "hi", age_days=40)
    state = consolidate(tmp_path / "dream.json", fresh, half)
    SessionStore(root).get("telegram:half").append(Message.user_text("more"))  # Dream has not read this
    age(half, 40)
    assert archive_sessions(root, 30, lambda p: is_consolidated(p, state), now=NOW) == []
    assert fresh.exists() and unread.exists() and half.exists()
    assert set(old_sessions(root, 30, now=NOW)) == {unread, half}
    assert not (root / "archive").exists()


@pytest.mark.parametrize("days", [0, -1])
def test_zero_days_never_archives(tmp_path: Path, days: float) -> None:
    root = tmp_path / "sessions"
    path = write(root, "telegram:1", "hi", age_days=10_000)
    assert archive_sessions(root, days, everything, now=NOW) == []
    assert old_sessions(root, days, now=NOW) == []
    assert path.exists()


def test_a_taken_name_gets_a_number(tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    first = write(root, "telegram:1", "first", age_days=40)
    assert archive_sessions(root, 30, everything, now=NOW) == [root / "archive" / "telegram%3A1.jsonl.gz"]
    write(root, "telegram:1", "second", age_days=40)
    assert archive_sessions(root, 30, everything, now=NOW) == [root / "archive" / "telegram%3A1-2.jsonl.gz"]
    write(root, "telegram:1", "third", age_days=40)
    assert archive_sessions(root, 30, everything, now=NOW) == [root / "archive" / "telegram%3A1-3.jsonl.gz"]
    texts = [read_archived(root / "archive" / name).messages[0].text
             for name in ("telegram%3A1.jsonl.gz", "telegram%3A1-2.jsonl.gz", "telegram%3A1-3.jsonl.gz")]
    assert texts == ["first", "second", "third"] and not first.exists()


def test_reset_files_are_archived_and_corrupt_ones_are_not(tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    store = SessionStore(root)
    store.get("telegram:1").append(Message.user_text("before /new"))
    store.reset("telegram:1").append(Message.user_text("after /new"))
    (reset,) = [p for p in root.glob("*.jsonl") if p != store.path_for("telegram:1")]
    corrupt = root / "telegram%3A2.jsonl.corrupt-20250101T000000"
    corrupt.write_bytes(b"not a session\n")
    for path in (reset, corrupt):
        age(path, 40)
    archived = archive_sessions(root, 30, everything, now=NOW)
    assert archived == [root / "archive" / f"{reset.name}.gz"]
    assert not reset.exists() and corrupt.exists() and store.path_for("telegram:1").exists()
    assert read_archived(archived[0]).messages[0].text == "before /new"


def test_files_without_a_header_count_as_consolidated(tmp_path: Path) -> None:
    """Dream has nothing to read in them; archiving keeps them, byte for byte."""
    root = tmp_path / "sessions"
    root.mkdir()
    path = root / "odd.jsonl"
    path.write_bytes(b"garbage\n")
    age(path, 40)
    (archived,) = archive_sessions(root, 30, lambda p: is_consolidated(p, DreamState()), now=NOW)
    assert gzip.decompress(archived.read_bytes()) == b"garbage\n"
    with pytest.raises(Unreadable):
        read_archived(archived)
    assert archived_key(archived) is None


def test_a_broken_archive_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"type":"header","version":1,"key":"k"}\n')[:-6])
    with pytest.raises(Unreadable):
        read_archived(path)
    path.write_bytes(b"plain text")
    with pytest.raises(Unreadable):
        read_archived(path)


def test_a_refused_write_keeps_the_original(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "sessions"
    path = write(root, "telegram:1", "hi", age_days=40)
    original = path.read_bytes()

    def full(*args: object, **kw: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("sessions.archive.os.fsync", full)
    with pytest.raises(SessionError, match="No space left on device"):
        archive_sessions(root, 30, everything, now=NOW)
    assert path.read_bytes() == original and list((root / "archive").iterdir()) == []


def test_parse_bytes_matches_read_session(tmp_path: Path) -> None:
    path = write(tmp_path, "telegram:1", "one", "two")
    with path.open("ab") as fh:
        fh.write(b'{"type":"mess')  # a torn tail
    from_file, from_bytes = read_session(path), parse_bytes(path.read_bytes())
    assert from_file == from_bytes and from_bytes.truncate_to is not None
    with pytest.raises(Unreadable):
        parse_bytes(b"")


def test_a_line_written_after_the_move_starts_a_fresh_file_and_a_crash_is_finished_later(tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    path = write(root, "telegram:1", "old", age_days=40)
    aside = path.with_name(path.name + ".archiving")
    path.rename(aside)  # what a crash right after the move leaves
    (root / "archive").mkdir()
    (root / "archive" / ".telegram%3A1.jsonl.abc.tmp").write_bytes(b"half a copy")
    fresh = write(root, "telegram:1", "new")  # the chat went on: a fresh file with its own header
    archived = archive_sessions(root, 30, everything, now=NOW)
    assert archived == [root / "archive" / "telegram%3A1.jsonl.gz"] and not aside.exists()
    assert [m.text for m in read_archived(archived[0]).messages] == ["old"]
    assert fresh.exists() and sorted(p.name for p in (root / "archive").iterdir()) == ["telegram%3A1.jsonl.gz"]
    aside.write_bytes(gzip.decompress(archived[0].read_bytes()))  # a crash after the archive was written
    assert archive_sessions(root, 30, everything, now=NOW) == [archived[0]] and not aside.exists()
    assert sorted(p.name for p in (root / "archive").iterdir()) == ["telegram%3A1.jsonl.gz"]
