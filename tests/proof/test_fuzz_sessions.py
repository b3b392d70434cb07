"""Hostile session files: loading never raises, writes only in the sessions folder, and what loaded
can be appended to and loaded again with the same content."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.types import Message
from sessions.reader import Unreadable, parse_bytes
from sessions.store import SessionStore

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HEADER = b'{"type":"header","version":1,"key":"k","created":1.0}'

ids = st.sampled_from(["a", "b", "c", 1, None, "\ud800"])
json_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10),
                        st.integers(min_value=10**310, max_value=10**320))
blocks = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=20)}),
    st.fixed_dictionaries({"type": st.just("tool_use"), "id": ids, "name": st.just("read_file"),
                           "input": st.just({})}),
    st.fixed_dictionaries({"type": st.just("tool_result"), "tool_use_id": ids, "content": st.text(max_size=5)},
                          optional={"is_error": st.booleans()}),
    st.dictionaries(st.sampled_from(["type", "text", "id"]), json_scalar, max_size=3),
    json_scalar,
)
records = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("message"), "role": st.sampled_from(["user", "assistant", "system", 3]),
         "content": st.lists(blocks, max_size=4) | json_scalar},
        optional={"time": json_scalar | st.sampled_from(["5", "nan", "x"]), "sender": json_scalar,
                  "msg_id": json_scalar, "kind": json_scalar}),
    st.fixed_dictionaries({"type": st.just("compaction"), "summary": json_scalar,
                           "upto": st.integers(-2, 12) | json_scalar}),
    st.fixed_dictionaries({"type": st.sampled_from(["header", "future", 7, None])}),
    st.dictionaries(st.text(max_size=5), json_scalar, max_size=3),
    st.lists(json_scalar, max_size=3),
)


def _line(rec: Any) -> bytes:
    return json.dumps(rec).encode()


garbage = st.one_of(
    st.binary(max_size=40), st.just(b""), st.just(b"\xff\xfe\x00"), st.just(b"\x00" * 20),
    st.just(b" " + b"[" * 50_000), st.just(b"[" * 50_000), st.just(b'{"type":"message"'),
    st.just(b'{"type":"message","role":"user","content":[],"time":' + b"9" * 400 + b"}"),
    st.just(b'{"type":"message","role":"user","content":[],"time":1e999}'),
    st.just(b'{"type":"message","role":"user","content":[{"type":"text","text":"\\ud800"}]}'),
    st.just(b"\xe2\x80\xa8 {}"), st.just(b"{} {}"), st.just(b"\r"),
)
lines = st.lists(records.map(_line) | garbage, max_size=12)


def _snapshot(root: Path) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath, name)
            out[str(path.relative_to(root))] = path.read_bytes()
    return out


def _state(store: SessionStore, key: str) -> tuple[list[str], str | None, int]:
    session = store.get(key)
    return [json.dumps(m.to_json(), sort_keys=True) for m in session.messages], session.summary, session.base


def _load_append_reload(data: bytes, key: str = "telegram:1") -> None:
    with tempfile.TemporaryDirectory() as tmp:
        parent = Path(tmp)
        (parent / "outside.txt").write_bytes(b"keep")
        root = parent / "sessions"
        root.mkdir()
        store = SessionStore(root)
        store.path_for(key).write_bytes(data)
        before = _snapshot(parent)
        messages, summary, base = _state(store, key)  # must not raise
        extra = Message.user_text("after the fuzz")
        store.get(key).append(extra)
        after = _snapshot(parent)
        changed = {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}
        assert all(name.startswith("sessions" + os.sep) for name in changed), changed
        again = _state(SessionStore(root), key)
        assert again == ([*messages, json.dumps(extra.to_json(), sort_keys=True)], summary, base)


@FAST
@given(st.binary(max_size=400))
def test_arbitrary_bytes(data: bytes) -> None:
    _load_append_reload(data)


@FAST
@given(lines, st.booleans())
def test_header_then_random_records_and_garbage(body: list[bytes], newline: bool) -> None:
    data = b"\n".join([HEADER, *body]) + (b"\n" if newline else b"")
    _load_append_reload(data)


@FAST
@given(lines, st.text(min_size=1, max_size=300))
def test_random_keys(body: list[bytes], key: str) -> None:
    _load_append_reload(b"\n".join([HEADER, *body, b""]), key)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([b"x", b"\xff", b'{"type":"message","role":"user","content":[{"type":"text","text":"',
                        b" [", b"["]), st.booleans(), st.booleans())
def test_huge_lines(fill: bytes, in_header: bool, terminated: bool) -> None:
    huge = fill + fill[-1:] * (1 << 20)
    data = huge if in_header else b"\n".join([HEADER, _line({"type": "message", "role": "user",
                                                             "content": []}), huge])
    _load_append_reload(data + (b"\n" if terminated else b""))


@FAST
@given(st.binary(max_size=200) | lines.map(lambda ls: b"\n".join([HEADER, *ls])))
def test_parse_bytes_raises_only_unreadable(data: bytes) -> None:
    try:
        parsed = parse_bytes(data)
    except Unreadable:
        return
    assert all(isinstance(m, Message) for m in parsed.messages)
