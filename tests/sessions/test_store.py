"""Session files: round trips, key names, and every kind of damage a crash or a hand edit leaves."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.errors import SessionError
from agent.types import Message, Role
from sessions import Session, SessionStore
from sessions.reader import _message
from sessions.repair import INTERRUPTED, repair_pairing

KEY = "telegram:123"
STAMP = r"\d{8}T\d{6}"


def text(role: Role, body: str, **kw: Any) -> Message:
    return Message(role, [{"type": "text", "text": body}], time=1767225600.0, **kw)


def asks(*ids: str) -> Message:
    blocks = [{"type": "tool_use", "id": i, "name": "read_file", "input": {"path": "a.md"}} for i in ids]
    return Message("assistant", [{"type": "text", "text": "Let me look."}, *blocks], time=1767225601.0)


def answers(*ids: str) -> Message:
    return Message("user", [{"type": "tool_result", "tool_use_id": i, "content": "ok", "is_error": False}
                            for i in ids], time=1767225602.0)


def dump(*msgs: Message) -> list[dict[str, Any]]:
    return [m.to_json() for m in msgs]


def line(record: dict[str, Any] | Message) -> bytes:
    data = record.to_json() if isinstance(record, Message) else record
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def write_file(store: SessionStore, *records: dict[str, Any] | Message | bytes, key: str = KEY) -> Path:
    """Build a session file by hand, header first, so a test can break it on purpose."""
    path = store.path_for(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"type": "header", "version": 1, "key": key, "created": 1767225600.0}
    path.write_bytes(line(header) + b"".join(r if isinstance(r, bytes) else line(r) for r in records))
    return path


def reload(store: SessionStore, key: str = KEY) -> Session:
    return SessionStore(store.root).get(key)


@pytest.fixture
def store(tmp_path: Path) -> SessionStore:
    return SessionStore(tmp_path / "sessions")


# --- round trips and the file format ---------------------------------------------------------------

ODD_TEXT = "emoji 😀🦜, RTL שלום, NUL \x00, ESC \x1b, tab \t, CR \r, LF \n, NEL \x85, LS \u2028, PS \u2029"


def test_round_trip(store: SessionStore) -> None:
    msgs = [text("user", ODD_TEXT, sender="42", msg_id="7"), asks("t1"), answers("t1"),
            text("assistant", "done"), text("user", "scheduled ping", kind="scheduled")]
    store.get(KEY).append(*msgs[:2])
    store.get(KEY).append(*msgs[2:])
    loaded = reload(store)
    assert dump(*loaded.messages) == dump(*msgs)
    assert loaded.notices == [] and loaded.summary is None and loaded.base == 0


def test_file_format(store: SessionStore) -> None:
    session = store.get(KEY)
    session.append(text("user", "héllo 😀"))
    lines = session.path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 3
    header = json.loads(lines[0])
    assert header["type"] == "header" and header["version"] == 1 and header["key"] == KEY
    assert isinstance(header["created"], float)
    assert lines[1] == json.dumps(text("user", "héllo 😀").to_json(), ensure_ascii=False,
                                  separators=(",", ":")).encode()
    assert "😀".encode() in lines[1]  # raw UTF-8, not \\u escapes


def test_file_is_created_lazily_and_get_is_cached(store: SessionStore) -> None:
    session = store.get(KEY)
    assert not session.path.exists() and store.keys() == []
    assert store.get(KEY) is session
    session.append()
    assert not session.path.exists()
    session.append(text("user", "hi"))
    assert session.path.exists()


def test_append_only_appends(store: SessionStore) -> None:
    session = store.get(KEY)
    session.append(text("user", "one"))
    before, inode = session.path.read_bytes(), session.path.stat().st_ino
    session.append(text("assistant", "two"), text("user", "three"))
    session.compact("summary", 1)
    after = session.path.read_bytes()
    assert after.startswith(before) and after.count(b"\n") == before.count(b"\n") + 3
    assert session.path.stat().st_ino == inode


def test_lone_surrogate_round_trips(store: SessionStore) -> None:
    # A platform's JSON may carry "\ud83d" alone; UTF-8 cannot hold it, a \\u escape can.
    msg = text("user", "broken \ud83d pair")
    store.get(KEY).append(msg)
    assert reload(store).messages[0].text == "broken \ud83d pair"


def test_permissions(store: SessionStore) -> None:
    session = store.get(KEY)
    session.append(text("user", "secret"))
    assert stat.S_IMODE(session.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.root.stat().st_mode) == 0o700


# --- key names -------------------------------------------------------------------------------------

def test_key_encoding_examples(store: SessionStore) -> None:
    assert store.path_for("terminal:default").name == "terminal%3Adefault.jsonl"
    assert store.path_for("slack:C1/thread:1.2").name == "slack%3AC1%2Fthread%3A1.2.jsonl"
    assert store.path_for("a b%~").name == "a%20b%25%7E.jsonl"
    assert store.path_for("é").name == "%C3%A9.jsonl"
    with pytest.raises(ValueError):
        store.path_for("")


ODD_KEYS = ["slack:C1/thread:1.2", "telegram:-100123", "email:ünïcødé@例え.jp", "emoji:😀", "../../etc/passwd",
            "%2F", "a.20260101T120000", ".", "..", "x" * 500, "ü" * 300]


def test_odd_keys_round_trip(store: SessionStore) -> None:
    for key in ODD_KEYS:
        session = store.get(key)
        assert session.path.parent == store.root
        assert len(session.path.name.encode()) < 200
        session.append(text("user", key))
    assert sorted(store.keys()) == sorted(ODD_KEYS)
    for key in ODD_KEYS:
        assert reload(store, key).messages[0].text == key


@settings(max_examples=50, deadline=None)
@given(st.text(st.characters(codec=None), min_size=1, max_size=40))
def test_any_key_round_trips(key: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SessionStore(Path(tmp))
        store.get(key).append(text("user", "hi"))
        assert store.keys() == [key]
        assert SessionStore(Path(tmp)).get(key).messages[0].text == "hi"


# --- torn last line (expected after a crash: WARNING only) -----------------------------------------

TORN_TAILS = [
    b'{"type":"message","role":"user","content":[{"type":"te',  # killed mid-write
    b'{"type":"message","role":"user","content":[{"type":"text","text":"\xf0\x9f',  # mid-character
    b"\x00" * 40,  # a power cut leaves zeros
    b'{"type":"message","role":"us\n',  # not JSON, though terminated
    b'{"type":"message","role":"nobody","content":[]}',  # unterminated and not a valid record
    b"   ",
]


@pytest.mark.parametrize("tail", TORN_TAILS)
def test_torn_last_line_is_cut_off(store: SessionStore, tail: bytes, caplog: pytest.LogCaptureFixture) -> None:
    path = write_file(store, text("user", "kept"), text("assistant", "also kept"))
    good = path.stat().st_size
    with path.open("ab") as fh:
        fh.write(tail)
    with caplog.at_level(logging.WARNING):
        session = store.get(KEY)
    assert [m.text for m in session.messages] == ["kept", "also kept"]
    assert session.notices == []
    assert "torn" in caplog.text and str(path) in caplog.text
    assert path.stat().st_size == good
    session.append(text("user", "next"))
    assert [m.text for m in reload(store).messages] == ["kept", "also kept", "next"]


def test_complete_last_line_without_newline_is_kept(store: SessionStore) -> None:
    path = write_file(store, text("user", "one"), line(text("assistant", "two")).rstrip(b"\n"))
    session = store.get(KEY)
    assert [m.text for m in session.messages] == ["one", "two"] and session.notices == []
    assert path.read_bytes().endswith(b"\n")
    session.append(text("user", "three"))
    assert [m.text for m in reload(store).messages] == ["one", "two", "three"]


def test_torn_first_append_quarantines_only_a_header_fragment(store: SessionStore) -> None:
    path = store.path_for(KEY)
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"type":"head')
    session = store.get(KEY)
    assert session.messages == [] and len(session.notices) == 1
    assert not path.exists()


# --- bad lines in the middle (WARNING + notice, bytes left in the file) ----------------------------

BAD_MIDDLE = [
    b"this is not json\n",
    b'{"type":"message","role":"bot","content":[]}\n',  # valid JSON, not a valid message
    b'{"type":"message","role":"user","content":"not a list"}\n',
    b'{"type":"compaction","summary":"s","upto":-1}\n',
    b'{"no_type":true}\n',
    b"[1,2,3]\n",
    b'{"type":"message","role":"user","content":[{"type":"text","text":"\xff\xfe"}]}\n',  # not UTF-8
    b"[" * 100_000 + b"\n",  # nested beyond the recursion limit
]


@pytest.mark.parametrize("bad", BAD_MIDDLE)
def test_bad_middle_line_is_skipped_with_notice(store: SessionStore, bad: bytes,
                                                caplog: pytest.LogCaptureFixture) -> None:
    path = write_file(store, text("user", "one"), bad, text("assistant", "two"))
    before = path.read_bytes()
    with caplog.at_level(logging.WARNING):
        session = store.get(KEY)
    assert [m.text for m in session.messages] == ["one", "two"]
    assert len(session.notices) == 1 and "1 line" in session.notices[0]
    assert f"line 3 of session file {path}" in caplog.text
    assert path.read_bytes() == before  # the damaged line stays on disk for a human


def test_many_bad_lines_make_one_notice(store: SessionStore) -> None:
    write_file(store, b"x\n", b"y\n", text("user", "one"), b"z\n", text("user", "two"))
    session = store.get(KEY)
    assert len(session.messages) == 2
    assert session.notices == ["3 lines of your conversation history could not be read and were skipped "
                               "(the file telegram%3A123.jsonl still contains them)."]


def test_blank_lines_and_unknown_records_are_ignored(store: SessionStore) -> None:
    write_file(store, text("user", "one"), b"\n", b"  \r\n", {"type": "from_the_future", "x": 1},
               {"type": "header", "version": 1, "key": KEY}, text("user", "two"))
    session = store.get(KEY)
    assert [m.text for m in session.messages] == ["one", "two"] and session.notices == []


def test_fast_message_parse_matches_from_json() -> None:
    full = Message("assistant", [{"type": "text", "text": "x"}], time=5.5, sender="s", msg_id="m", kind="repair")
    for f in dataclasses.fields(Message):  # a new stored field must be set here, and so reach the check below
        if not f.compare:  # derived data (the render cache) is not stored
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        assert getattr(full, f.name) != default, f"set Message.{f.name} in this test"
    for rec in (full.to_json(), text("user", "plain").to_json(), {"type": "message", "role": "user",
                                                                   "content": []}):
        assert _message(rec) == Message.from_json(rec)


# --- tool-call pairing -----------------------------------------------------------------------------

def test_unanswered_tool_call_at_the_end_is_answered_on_disk(store: SessionStore) -> None:
    path = write_file(store, text("user", "read a.md and b.md"), asks("t1", "t2"))
    session = store.get(KEY)
    repair = session.messages[-1]
    assert repair.role == "user" and repair.kind == "repair"
    assert repair.content == [{"type": "tool_result", "tool_use_id": i, "content": INTERRUPTED, "is_error": True}
                              for i in ("t1", "t2")]
    assert len(session.notices) == 1 and "interrupted" in session.notices[0]
    assert json.loads(path.read_bytes().splitlines()[-1])["kind"] == "repair"  # persisted
    again = reload(store)
    assert dump(*again.messages) == dump(*session.messages) and again.notices == []


def test_unanswered_tool_call_in_the_middle_is_repaired_in_memory(store: SessionStore) -> None:
    path = write_file(store, text("user", "go"), asks("t1"), text("user", "hello?"))
    before = path.read_bytes()
    session = store.get(KEY)
    assert [m.kind for m in session.messages] == ["chat", "chat", "repair", "chat"]
    assert session.messages[2].tool_results[0]["tool_use_id"] == "t1"
    assert path.read_bytes() == before
    assert dump(*reload(store).messages) == dump(*session.messages)  # deterministic


def test_partial_results_get_the_missing_ones_in_front(store: SessionStore) -> None:
    write_file(store, asks("t1", "t2", "t3"), answers("t2"), text("assistant", "done"))
    session = store.get(KEY)
    results = session.messages[1].tool_results
    assert [r["tool_use_id"] for r in results] == ["t1", "t3", "t2"]
    assert [r["is_error"] for r in results] == [True, True, False]
    assert len(session.messages) == 3


def test_orphan_and_repeated_results_are_dropped() -> None:
    mixed = Message("user", [*answers("zz").content, {"type": "text", "text": "and also"}])
    msgs = [text("user", "hi"), answers("orphan"), asks("t1"), answers("t1", "t1", "nope"), mixed,
            text("assistant", "ok")]
    fixed, changes = repair_pairing(msgs)
    assert changes == 4
    assert [m.text for m in fixed] == ["hi", "Let me look.", "", "and also", "ok"]
    assert [r["tool_use_id"] for r in fixed[2].tool_results] == ["t1"]
    assert fixed[3].tool_results == []
    assert dump(*msgs)[3]["content"][1]["tool_use_id"] == "t1"  # inputs untouched
    assert len(msgs[3].content) == 3


def test_assistant_after_assistant_tool_call_gets_answer_between() -> None:
    fixed, changes = repair_pairing([asks("a"), text("assistant", "hm"), asks("b"), answers("b")])
    assert changes == 1
    assert [(m.role, m.kind) for m in fixed] == [("assistant", "chat"), ("user", "repair"),
                                                ("assistant", "chat"), ("assistant", "chat"), ("user", "chat")]
    assert repair_pairing(fixed) == (fixed, 0)


def test_tool_type_spelled_with_escapes_is_still_paired(store: SessionStore) -> None:
    # Loading skips the pairing pass when no line can name a tool block; an escape must not fool that.
    call = line(asks("t1")).replace(b'"tool_use"', b'"tool\\u005fuse"')
    write_file(store, text("user", "go"), call, text("user", "hello?"))
    assert [m.kind for m in store.get(KEY).messages] == ["chat", "chat", "repair", "chat"]


def test_repair_tail(store: SessionStore) -> None:
    session = store.get(KEY)
    assert session.repair_tail("Cancelled") == []
    session.append(text("user", "go"), asks("a", "b"))
    added = session.repair_tail("Cancelled by the user.")
    assert len(added) == 1 and session.messages[-1] is added[0] and added[0].kind == "repair"
    assert [(r["tool_use_id"], r["content"], r["is_error"]) for r in added[0].tool_results] == [
        ("a", "Cancelled by the user.", True), ("b", "Cancelled by the user.", True)]
    assert session.repair_tail("again") == []
    assert dump(*reload(store).messages) == dump(*session.messages)


# --- unreadable files are quarantined --------------------------------------------------------------

UNREADABLE = [
    b"not json at all\n" + line(text("user", "x")),
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xd8\xff",
    line(text("user", "no header")),
    b'{"type":"header","version":99,"key":"telegram:123"}\n',
    b'\xff\xfe{\x00"\x00t\x00\n',  # UTF-16
    b"\n\n\n",
    b"[]\n",
]


@pytest.mark.parametrize("content", UNREADABLE)
def test_unreadable_file_is_moved_aside(store: SessionStore, content: bytes) -> None:
    path = store.path_for(KEY)
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    session = store.get(KEY)
    assert session.messages == [] and not path.exists()
    [aside] = [p for p in store.root.iterdir() if p != path]
    assert re.fullmatch(rf"telegram%3A123\.corrupt-{STAMP}", aside.name)
    assert aside.read_bytes() == content
    assert session.notices == [f"Your previous conversation file could not be read; it was saved as "
                               f"{aside.name} and a new conversation was started."]
    assert store.keys() == []
    session.append(text("user", "fresh start"))
    again = reload(store)
    assert [m.text for m in again.messages] == ["fresh start"] and again.notices == []
    assert store.keys() == [KEY]


def test_two_quarantines_keep_both_files(store: SessionStore) -> None:
    for _ in range(2):
        store.path_for(KEY).parent.mkdir(parents=True, exist_ok=True)
        store.path_for(KEY).write_bytes(b"garbage")
        SessionStore(store.root).get(KEY)
    assert len(list(store.root.glob("*.corrupt-*"))) == 2


def test_empty_file_is_a_fresh_session(store: SessionStore) -> None:
    path = store.path_for(KEY)
    path.parent.mkdir(parents=True)
    path.touch()
    session = store.get(KEY)
    assert session.messages == [] and session.notices == []
    session.append(text("user", "hi"))
    assert json.loads(path.read_bytes().splitlines()[0])["type"] == "header"


ORIGINAL = [text("user", "one"), asks("t1"), answers("t1"), text("assistant", "two")]
RECORDS = [line(text("user", "x")), line(asks("t9")), line(answers("t9")), line(answers("t1")),
           line({"type": "compaction", "summary": "s", "upto": 3, "time": 1.0}),
           line({"type": "compaction", "summary": "far", "upto": 99, "time": 1.0}),
           line({"type": "header", "version": 1, "key": KEY})]
# Random bytes rarely look like JSON, so mix in whole records, records cut short, and line breaks.
GARBAGE = st.lists(st.one_of(st.binary(max_size=24), st.sampled_from(RECORDS),
                             st.sampled_from(RECORDS).flatmap(lambda r: st.integers(0, len(r)).map(lambda n: r[:n])),
                             st.sampled_from([b"\n", b"\x00", b"\xf0\x9f", b"{", b"}"])),
                   max_size=8).map(b"".join)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(garbage=GARBAGE)
def test_garbage_appended_to_a_valid_file_never_breaks_loading(garbage: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SessionStore(Path(tmp))
        path = write_file(store, *ORIGINAL)
        with path.open("ab") as fh:
            fh.write(garbage)
        session = store.get(KEY)
        kept = len(ORIGINAL) - session.base  # a compaction record may have summarised some of them
        assert dump(*session.messages[:max(kept, 0)]) == dump(*ORIGINAL[session.base:])
        assert session.repair_tail("x") == []
        size = path.stat().st_size
        second = reload(store)  # the first load left a file the next one takes as it is
        assert dump(*second.messages) == dump(*session.messages) and path.stat().st_size == size
        assert (second.summary, second.base) == (session.summary, session.base)
        session.append(text("user", "after"))
        assert dump(*reload(store).messages) == dump(*session.messages)


@settings(max_examples=200, deadline=None)
@given(content=st.binary(max_size=300))
def test_any_file_content_never_breaks_loading(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SessionStore(Path(tmp))
        store.path_for(KEY).write_bytes(content)
        session = store.get(KEY)
        assert dump(*reload(store).messages) == dump(*session.messages)
        session.append(text("user", "after"))
        assert reload(store).messages[-1].text == "after"


# --- compaction ------------------------------------------------------------------------------------

def test_compaction_survives_reload_and_latest_wins(store: SessionStore) -> None:
    session = store.get(KEY)
    session.append(*[text("user", str(i)) for i in range(6)])
    session.compact("first summary", 2)
    assert [m.text for m in session.messages] == ["2", "3", "4", "5"]  # the summarised ones left memory
    session.compact("second summary", 2)  # counted from the messages still held
    assert session.summary == "second summary" and [m.text for m in session.active()] == ["4", "5"]
    assert session.base == 4 and json.loads(session.path.read_bytes().splitlines()[-1])["upto"] == 4
    loaded = reload(store)
    assert (loaded.summary, loaded.base) == ("second summary", 4)
    assert [m.text for m in loaded.active()] == ["4", "5"] and [m.text for m in loaded.messages] == ["4", "5"]
    loaded.append(text("user", "6"))
    loaded.compact("third summary", 1)
    assert [m.text for m in reload(store).active()] == ["5", "6"] and reload(store).base == 5
    with pytest.raises(ValueError):
        session.compact("too far", 3)


def test_compaction_beyond_the_messages_is_clamped(store: SessionStore) -> None:
    write_file(store, text("user", "a"), {"type": "compaction", "summary": "s", "upto": 50, "time": 1.0})
    session = store.get(KEY)
    assert session.base == 1 and session.active() == [] and session.messages == []


def test_compaction_counts_repaired_messages(store: SessionStore) -> None:
    # Indices are into the repaired list, which is the same on every load.
    path = write_file(store, asks("t1"), text("user", "hello?"))
    session = store.get(KEY)
    session.compact("asked for a file", 2)
    assert [m.text for m in session.active()] == ["hello?"]
    assert [m.text for m in reload(store).active()] == ["hello?"]
    assert path.exists()


# --- reset and keys --------------------------------------------------------------------------------

def test_reset_keeps_the_old_file(store: SessionStore) -> None:
    old = store.get(KEY)
    old.append(text("user", "old conversation"))
    content = old.path.read_bytes()
    fresh = store.reset(KEY)
    assert fresh is not old and fresh.messages == [] and store.get(KEY) is fresh
    [archived] = list(store.root.iterdir())
    assert re.fullmatch(rf"telegram%3A123\.{STAMP}\.jsonl", archived.name)
    assert archived.read_bytes() == content
    assert store.keys() == []
    old.append(text("assistant", "a late reply"))  # a turn still running goes to the old file
    assert archived.read_bytes().count(b"\n") == 3 and not store.path_for(KEY).exists()
    fresh.append(text("user", "new conversation"))
    assert store.keys() == [KEY]
    assert [m.text for m in reload(store).messages] == ["new conversation"]


def test_reset_twice_in_one_second_keeps_both(store: SessionStore) -> None:
    store.get(KEY).append(text("user", "one"))
    store.reset(KEY).append(text("user", "two"))
    store.reset(KEY)
    assert len(list(store.root.iterdir())) == 2


def test_reset_of_an_unused_key(store: SessionStore) -> None:
    assert store.reset("never:used").messages == []
    assert not store.root.exists() or list(store.root.iterdir()) == []


def test_keys_ignores_other_files(store: SessionStore) -> None:
    assert store.keys() == []
    store.get("a:1").append(text("user", "x"))
    store.get("b:2").append(text("user", "y"))
    store.reset("b:2")
    (store.root / "notes.txt").write_text("hello")
    (store.root / "a%3A1.corrupt-20260101T000000").write_text("junk")
    (store.root / "c%3A3.jsonl").write_text("junk")  # unreadable but live: quarantined when loaded
    assert store.keys() == ["a:1", "c:3"]


# --- OS failures -----------------------------------------------------------------------------------

def test_write_failure_raises_session_error_naming_the_file(store: SessionStore) -> None:
    session = store.get(KEY)
    store.root.parent.mkdir(parents=True, exist_ok=True)
    store.root.write_text("a file where the folder should be")
    with pytest.raises(SessionError, match=re.escape(str(session.path))):
        session.append(text("user", "hi"))
    assert session.messages == []


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_disk_full_raises_session_error(store: SessionStore) -> None:
    session = store.get(KEY)
    store.root.mkdir(parents=True)
    session.path.symlink_to("/dev/full")
    with pytest.raises(SessionError, match="disk space"):
        session.append(text("user", "hi"))
    assert session.messages == []


def test_unreadable_root_raises_session_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(SessionError, match="Could not read"):
        SessionStore(tmp_path / "file").get(KEY)


def test_only_the_most_recently_used_sessions_stay_in_memory(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "sessions", cached=2)
    for key in ("a:1", "b:1", "c:1"):
        store.get(key).append(Message.user_text(f"hello {key}"))
    first = store.get("c:1")
    assert store.get("c:1") is first  # cached
    again = store.get("a:1")  # evicted when c:1 came in: read again from its file, complete
    assert [m.text for m in again.messages] == ["hello a:1"]
    again.append(Message.user_text("more"))
    assert [m.text for m in SessionStore(tmp_path / "sessions").get("a:1").messages] == ["hello a:1", "more"]


def test_sessions_stay_within_the_memory_budget_and_come_back_whole(tmp_path: Path) -> None:
    writer = SessionStore(tmp_path / "sessions")
    for key in ("a:1", "b:1", "c:1"):
        writer.get(key).append(*[Message.user_text(f"{key} says {i}") for i in range(25)])
    one = writer.get("a:1").size
    store = SessionStore(tmp_path / "sessions", memory=int(one * 2.5))  # room for two of them
    for key in ("a:1", "b:1", "c:1"):
        current = store.get(key)
    assert store.loaded() == ["b:1", "c:1"] and sum(store.get(k).size for k in store.loaded()) <= one * 2.5
    back = store.get("a:1")  # read again from its file
    assert [m.text for m in back.messages] == [f"a:1 says {i}" for i in range(25)]
    assert store.loaded() == ["c:1", "a:1"] and store.get("c:1") is current
    big = store.get("d:1")
    big.append(Message.user_text("x" * 100_000))  # alone over the budget: the one in use stays
    assert store.get("d:1") is big and store.loaded() == ["d:1"]


def test_the_size_estimate_follows_what_a_session_takes(tmp_path: Path) -> None:
    """Session.size (what the budget counts) against tracemalloc, for short chat lines and for long
    tool output, once the messages have been rendered and put in a provider's wire form."""
    import tracemalloc

    from agent.context import render
    from agent.providers.anthropic import to_wire
    writer = SessionStore(tmp_path / "sessions")
    writer.get("short:1").append(*[m for i in range(300) for m in (
        Message.user_text(f"please answer m{i:05d}", sender="5000", msg_id=str(1000 + i)),
        Message("assistant", [{"type": "text", "text": f"here is the answer to m{i:05d}"}]))])
    writer.get("long:1").append(*[m for i in range(20) for m in (asks(f"t{i}"), Message("user", [
        {"type": "tool_result", "tool_use_id": f"t{i}", "content": "page text " * 2_000, "is_error": False}]))])
    for key in ("short:1", "long:1"):
        store = SessionStore(tmp_path / "sessions")
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            session = store.get(key)
            to_wire(render(session.active(), session.summary))
            taken = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert 0.67 < session.size / taken < 1.5, (key, session.size, taken)


def test_a_load_never_holds_the_whole_file_besides_what_it_parsed(tmp_path: Path) -> None:
    """Read a line at a time: the peak of a load is what it keeps plus about one line, where reading
    the file whole and splitting it would add two more copies of the file."""
    import tracemalloc
    writer = SessionStore(tmp_path / "sessions")
    writer.get(KEY).append(*[Message.user_text(f"{i} " + "words " * 2_000) for i in range(200)])  # 2.4 MB
    file_size = writer.path_for(KEY).stat().st_size
    store = SessionStore(tmp_path / "sessions")
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        session = store.get(KEY)
        kept, peak = (n - before for n in tracemalloc.get_traced_memory())
    finally:
        tracemalloc.stop()
    assert len(session.messages) == 200 and kept > file_size * 0.9
    assert peak - kept < file_size / 4, (file_size, kept, peak)


def test_summarised_messages_leave_memory(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "sessions")
    session = store.get(KEY)
    session.append(*[Message.user_text(f"line {i}") for i in range(100)])
    size = session.size
    session.compact("a summary", 90)
    assert len(session.messages) == 10 and session.size < size / 5
    reloaded = reload(store)  # the file keeps all 100 lines; memory only the 10 left
    assert [m.text for m in reloaded.messages] == [f"line {i}" for i in range(90, 100)]
    assert reloaded.size < size / 5 + 10_000 and len(reloaded.path.read_bytes().splitlines()) == 102


def test_a_session_with_notices_to_show_is_not_let_go(tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    store = SessionStore(root, memory=1)  # nothing but the session in use fits
    path = store.path_for("a:1")
    root.mkdir()
    path.write_bytes(b"not a session\n")  # quarantined on load, with a notice for the chat
    loaded = store.get("a:1")
    assert loaded.notices
    store.get("b:1").append(Message.user_text("meanwhile"))
    store.get("c:1")
    assert store.get("a:1") is loaded and loaded.notices  # the notice is still there to be shown
    loaded.notices.clear()  # shown
    store.get("b:1")
    assert "a:1" not in store.loaded()
