"""``reverie sessions list | show | archive`` through ``agent.cli.main`` with a temporary config."""

from __future__ import annotations

import gzip
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.cli import main
from agent.lock import WorkspaceLock, running_pid
from agent.types import Message
from memory.cursors import identity, load_state, save_state
from sessions import SessionStore

DAY = 86400.0
T0 = 1767225600.0  # 2026-01-01 00:00 UTC


def when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return tmp_path / "ws"


@pytest.fixture
def config(tmp_path: Path, ws: Path) -> Path:
    return write_config(tmp_path, ws)


def write_config(tmp_path: Path, ws: Path, **extra: Any) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"workspace": str(ws), **extra}))
    return path


def sessions(config: Path, *args: str) -> int:
    return main(["sessions", *args, "--config", str(config)])


def say(ws: Path, key: str, *msgs: Message, age_days: float = 0.0) -> Path:
    session = SessionStore(ws / "sessions").get(key)
    session.append(*msgs)
    stamp = time.time() - age_days * DAY
    os.utime(session.path, (stamp, stamp))
    return session.path


def text(body: str, role: str = "user", stamp: float = T0, **kw: Any) -> Message:
    return Message(role, [{"type": "text", "text": body}], time=stamp, **kw)  # type: ignore[arg-type]


def consolidate(ws: Path, *paths: Path) -> None:
    """Record in Dream's state that it has read every line of ``paths``."""
    state_file = ws / "state" / "dream.json"
    state = load_state(state_file)
    for path in paths:
        ident = identity(path)
        assert ident is not None
        state.cursors[ident] = path.stat().st_size
    save_state(state_file, state)


def test_list_shows_live_reset_and_archived_conversations(config: Path, ws: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert sessions(config, "list") == 0
    assert capsys.readouterr().out == "No conversations yet.\n"
    store = SessionStore(ws / "sessions")
    store.get("telegram:1").append(text("old one"), text("reply", "assistant"))
    store.reset("telegram:1")
    reset = next((ws / "sessions").glob("telegram%3A1.*.jsonl"))
    os.utime(reset, (T0, T0))
    live = say(ws, "telegram:1", text("new one"), age_days=1)
    other = say(ws, "discord:2", *(text(f"m{i}") for i in range(12)), age_days=40)
    consolidate(ws, other)
    assert sessions(config, "archive") == 0
    fresh = say(ws, "terminal:default", text("hello"))
    consolidate(ws, fresh)
    capsys.readouterr()
    assert sessions(config, "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"4 conversations in {ws / 'sessions'}, newest first:"
    assert lines[1].split() == ["KEY", "MESSAGES", "LAST", "ACTIVITY", "SIZE", "STATE", "DREAM"]
    rows = [line.split("  ") for line in lines[2:]]
    cells = [[cell.strip() for cell in row if cell.strip()] for row in rows]
    stamp = reset.name.split(".")[1]
    assert cells == [
        ["terminal:default", "1", when(fresh.stat().st_mtime), f"{fresh.stat().st_size} B", "live", "consolidated"],
        ["telegram:1", "1", when(live.stat().st_mtime), f"{live.stat().st_size} B", "live", "not yet"],
        ["discord:2", "12", when(time.time() - 40 * DAY), cells[2][3], "archived", "consolidated"],
        ["telegram:1", "2", when(T0), f"{reset.stat().st_size} B", f"reset {stamp}", "not yet"],
    ]
    assert lines[2].index(" 1 ") == lines[4].index("12 ")  # counts are right-aligned


def test_list_without_dream_has_no_dream_column(tmp_path: Path, ws: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, ws, memory={"dream": {"enabled": False}})
    say(ws, "telegram:1", text("hi"))
    (ws / "sessions" / "broken.jsonl").write_bytes(b"not json\n")
    assert sessions(config, "list") == 0
    out = capsys.readouterr().out
    assert "DREAM" not in out and "consolidated" not in out
    assert re.search(r"^  broken +\? .* 9 B  live, unreadable$", out, re.M)


def test_show_prints_the_live_conversation(config: Path, ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = say(ws, "telegram:1",
               text("What is in a.md?", sender="Ann"),
               Message("assistant", [{"type": "text", "text": "Let me look."},
                                     {"type": "tool_use", "id": "t1", "name": "read_file",
                                      "input": {"path": "a.md", "pad": "x" * 300}}], time=T0 + 60),
               Message("user", [{"type": "tool_result", "tool_use_id": "t1", "content": "line one\nline two",
                                 "is_error": False}], time=T0 + 61),
               Message("user", [{"type": "text", "text": "and this:"}, {"type": "image", "media_type": "image/png",
                                                                        "data": "AAAA"}], time=T0 + 120),
               text("Two lines,\nhere.", "assistant", T0 + 180))
    assert sessions(config, "show", "telegram:1") == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[:3] == ["Conversation telegram:1 (live), 5 messages.", f"File: {path}", ""]
    assert lines[3] == f"[{when(T0)}] user (Ann): What is in a.md?"
    assert lines[4] == f"[{when(T0 + 60)}] assistant: Let me look."
    assert lines[5].startswith('  → read_file({"path": "a.md", "pad": "xxx') and lines[5].endswith("x…")
    assert len(lines[5]) == 2 + 200
    assert lines[6] == f"[{when(T0 + 61)}] user: ← read_file returned: line one line two"
    assert lines[7:] == [f"[{when(T0 + 120)}] user: and this:", "  [image]",
                         f"[{when(T0 + 180)}] assistant: Two lines,", "  here."]


def test_show_falls_back_to_the_newest_archived_conversation(config: Path, ws: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    say(ws, "telegram:1", text("first"), age_days=50)
    consolidate(ws, ws / "sessions" / "telegram%3A1.jsonl")
    assert sessions(config, "archive", "--days", "10") == 0
    say(ws, "telegram:1", text("second"), age_days=40)
    consolidate(ws, ws / "sessions" / "telegram%3A1.jsonl")
    capsys.readouterr()
    assert sessions(config, "archive", "--days", "10") == 0
    assert capsys.readouterr().out.startswith("  telegram:1 -> archive/telegram%3A1-2.jsonl.gz\n")  # the clash
    assert sessions(config, "show", "telegram:1") == 0
    out = capsys.readouterr().out
    archived = ws / "sessions" / "archive" / "telegram%3A1-2.jsonl.gz"
    assert out == ("No live conversation for telegram:1; showing the newest earlier one (archived), 1 message.\n"
                   f"File: {archived}\n\n[{when(T0)}] user: second\n")


def test_show_an_unknown_or_missing_key(config: Path, ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    say(ws, "telegram:1", text("hi"))
    assert sessions(config, "show", "telegram:2") == 2
    err = capsys.readouterr().err
    assert "No conversation with the key 'telegram:2'" in err and "`reverie sessions list`" in err
    assert sessions(config, "show") == 2
    assert "reverie sessions show KEY" in capsys.readouterr().err


def test_control_characters_are_escaped(config: Path, ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = "irc:\x1b]0;owned\x07"
    say(ws, key, text("\x1b[2Jcleared\rback", sender="Eve\x1b[31m"))
    assert sessions(config, "show", key) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out and "\x07" not in out
    assert "Conversation irc:\\x1b]0;owned\\x07 (live)" in out
    assert "user (Eve\\x1b[31m): \\x1b[2Jcleared\\rback" in out
    assert sessions(config, "list") == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "irc:\\x1b]0;owned\\x07" in out


def test_archive_moves_old_consolidated_conversations(config: Path, ws: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    old = say(ws, "telegram:1", text("old"), age_days=40)
    waiting = [say(ws, f"telegram:{n}", text("unread"), age_days=40) for n in (2, 3)]
    recent = say(ws, "telegram:4", text("recent"), age_days=1)
    consolidate(ws, old, recent)
    data = old.read_bytes()
    assert sessions(config, "archive") == 0
    out = capsys.readouterr().out
    archive = ws / "sessions" / "archive"
    assert out.startswith("  telegram:1 -> archive/telegram%3A1.jsonl.gz\nArchived 1 conversation (")
    assert f") into {archive}.\n2 old sessions wait for Dream to read them first (reverie dream).\n" in out
    assert gzip.decompress((archive / "telegram%3A1.jsonl.gz").read_bytes()) == data
    assert not old.exists() and recent.exists() and all(p.exists() for p in waiting)
    assert sessions(config, "archive") == 0
    assert capsys.readouterr().out == (
        "Nothing to archive: no session is both older than 30 days and fully consolidated by Dream.\n"
        "2 old sessions wait for Dream to read them first (reverie dream).\n")
    assert sessions(config, "archive", "--days", "0") == 0
    assert "nothing was archived" in capsys.readouterr().out
    assert sessions(config, "archive", "--days", "0.5") == 0
    assert "Archived 1 conversation" in capsys.readouterr().out and not recent.exists()


def test_archive_without_dream_takes_every_old_conversation(tmp_path: Path, ws: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, ws, memory={"dream": {"enabled": False}},
                          sessions={"archive_after_days": 7})
    say(ws, "telegram:1", text("old"), age_days=8)
    say(ws, "telegram:2", text("new"), age_days=6)
    assert sessions(config, "archive") == 0
    out = capsys.readouterr().out
    assert "Archived 1 conversation" in out and "Dream" not in out
    assert sessions(config, "archive") == 0
    assert capsys.readouterr().out == "Nothing to archive: no session is older than 7 days.\n"


def refused_while_locked(config: Path, ws: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """``sessions archive`` while a daemon holds the workspace: exit 1; its error text."""
    lock = WorkspaceLock(ws)
    lock.acquire()
    try:
        assert sessions(config, "archive") == 1
    finally:
        lock.release()
    return capsys.readouterr().err


def test_archive_is_refused_while_the_daemon_runs(config: Path, ws: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = say(ws, "telegram:1", text("old"), age_days=40)
    consolidate(ws, path)
    err = refused_while_locked(config, ws, capsys)
    assert f"reverie is running for {ws.resolve()} (pid {os.getpid()})" in err
    assert "archives old conversations itself after each Dream run" in err and "Stop it first" in err
    assert path.exists()
    assert sessions(config, "archive") == 0
    assert not path.exists()


def test_archive_refusal_without_dream_does_not_promise_archiving(tmp_path: Path, ws: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, ws, memory={"dream": {"enabled": False}})
    path = say(ws, "telegram:1", text("old"), age_days=40)
    err = refused_while_locked(config, ws, capsys)
    assert "Stop it first to archive by hand" in err and "after each Dream run" not in err
    assert "does not archive on its own" in err and path.exists()


def test_archive_holds_the_workspace_lock_throughout(config: Path, ws: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = say(ws, "telegram:1", text("old"), age_days=40)
    consolidate(ws, path)
    seen: list[int | None] = []

    def archive(*args: Any, **kwargs: Any) -> list[Path]:
        seen.append(running_pid(ws))  # a daemon starting now would find the workspace taken
        return []

    monkeypatch.setattr("sessions.cli.archive_sessions", archive)
    assert sessions(config, "archive") == 0
    assert seen == [os.getpid()] and running_pid(ws) is None


def test_show_and_list_mask_secrets(tmp_path: Path, ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = "abcd1234-very-secret-value"
    config = write_config(tmp_path, ws, llm={"api_key": secret})
    say(ws, f"irc:{secret}",
        text(f"my key is {secret}, keep it"),
        Message("assistant", [{"type": "tool_use", "id": "t1", "name": "read_file", "input": {"path": ".env"}}],
                time=T0 + 1),
        Message("user", [{"type": "tool_result", "tool_use_id": "t1", "content": "x" * 190 + f"KEY={secret}",
                          "is_error": False}], time=T0 + 2))
    assert sessions(config, "show", f"irc:{secret}") == 0
    out = capsys.readouterr().out
    assert secret not in out and "abcd1234" not in out  # not even the part before a cut
    assert "my key is ***, keep it" in out and "← read_file returned: " in out
    assert sessions(config, "list") == 0
    out = capsys.readouterr().out
    assert secret not in out and "irc:***" in out


def test_show_an_unreadable_archive_that_list_shows(config: Path, ws: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    archive = ws / "sessions" / "archive"
    archive.mkdir(parents=True)
    (archive / "telegram%3A1.jsonl.gz").write_bytes(b"not gzip")
    (archive / "telegram%3A1-2.jsonl.gz").write_bytes(gzip.compress(b"no header\n"))
    assert sessions(config, "list") == 0
    out = capsys.readouterr().out
    assert re.search(r"^  telegram:1 +\? .*archived, unreadable", out, re.M)
    assert "telegram:1-2" not in out  # the -2 of a taken name is no part of the key
    assert sessions(config, "show", "telegram:1") == 1
    err = capsys.readouterr().err
    assert "cannot be read" in err and "telegram%3A1" in err and "No conversation" not in err


@pytest.mark.parametrize("argv", [["list", "foo"], ["archive", "foo"], ["list", "--days", "3"],
                                  ["show", "telegram:1", "--days", "3"], ["archive", "--days", "-1"],
                                  ["archive", "--days", "nan"], ["archive", "--days", "inf"]])
def test_bad_arguments_are_usage_errors(config: Path, ws: Path, argv: list[str],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = say(ws, "telegram:1", text("old"), age_days=40)
    consolidate(ws, path)
    assert sessions(config, *argv) == 2
    err = capsys.readouterr().err
    assert "takes no KEY" in err or "--days" in err
    assert path.exists()
