"""Hostile tool-call arguments from the model: always a tool_result block, never an exception or an
internal-error incident, and nothing written outside the workspace."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import ToolsConfig
from agent.tools.registry import ToolContext, builtin_registry
from agent.types import ToolCall

FAST = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
CONFIG = ToolsConfig()
REGISTRY = builtin_registry(CONFIG)
assert "exec" not in REGISTRY.names()

PATHS = ["", ".", "..", "../outside/secret.txt", "../outside/new.txt", "/etc/passwd", "/tmp/x", "~", "~/x",
         "~root/x", "~no-such-user-here/x", "a\x00b", "x" * 300, "a/" * 2000, "sessions/x.jsonl", "config.yaml",
         ".env", "notes/.env.local", "memory/MEMORY.md", "out", "out/x", "out/new.txt", "filelink", "loop",
         "loop/x", "dir/../../outside/x", "dir/sub/new.txt", "notes.txt", "new.txt", "dir/new.txt", "dir", "\ud800", "file:///etc/passwd",
         " ", "\n", "-", "*", "dir/./../notes.txt", "\\..\\x"]
TEXTS = ["", "x", "\ud800", "ok\udfff", "\x00", "a\nb\r\n", "x" * 100_000, "(a*)*b", "[", "(" * 5000 + ")" * 5000, "a{4294967296}", "(?P<",
         "\\", "*.txt", "**/*", "[!a]", "http://127.0.0.1:1/", "http://10.0.0.1/", "http://[::1]/",
         "https://a..b/", "http://" + "x" * 70 + ".invalid/", "http://h.invalid:99999/", "ftp://x/", "http://",
         "http://[v1.x]/", "http://\x00.invalid/", "http://ü.invalid/"]

strings = st.sampled_from(PATHS) | st.sampled_from(TEXTS) | st.text(max_size=30)
anything: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=2**63) | st.floats() | strings,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


def _value_for(name: str, prop: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Mostly the right type with a hostile value (so calls get past validation), sometimes anything."""
    text = st.sampled_from(PATHS if name == "path" else TEXTS)
    typed = {"string": text, "integer": st.integers(-5, 5) | st.integers(), "boolean": st.booleans(),
             "number": st.floats(), "array": st.lists(text, max_size=3)}.get(prop.get("type", ""), anything)
    return st.one_of(typed, typed, typed, anything)


def _rarely(draw: st.DrawFn, one_in: int) -> bool:
    return draw(st.sampled_from([False] * (one_in - 1) + [True]))  # integers() leans towards 0: too often


@st.composite
def calls(draw: st.DrawFn) -> ToolCall:
    spec = draw(st.sampled_from(REGISTRY.specs()))
    props: dict[str, Any] = spec.parameters["properties"]
    args = {key: draw(_value_for(key, prop)) for key, prop in props.items() if not _rarely(draw, 6)}
    if _rarely(draw, 8):
        args[draw(st.text(max_size=8))] = draw(anything)
    arguments: Any = draw(anything) if _rarely(draw, 12) else args
    error = draw(st.none() | st.just("Expecting value: line 1 column 1 (char 0)")) if not arguments else None
    name = draw(st.text(max_size=10)) if _rarely(draw, 15) else spec.name
    return ToolCall("call-1", name, arguments, error)


def _snapshot(root: Path, skip: Path) -> dict[str, tuple[int, int, bytes]]:
    out: dict[str, tuple[int, int, bytes]] = {}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if Path(dirpath, d) != skip]
        for name in [*files, *dirs]:
            path = Path(dirpath, name)
            st_ = path.lstat()
            data = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
            out[str(path)] = (st_.st_mode, st_.st_size, data)
    return out


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        parent = Path(tmp)
        outside, ws = parent / "outside", parent / "ws"
        outside.mkdir()
        (outside / "secret.txt").write_text("secret")
        for folder in ("dir/sub", "sessions", "memory", "notes"):
            (ws / folder).mkdir(parents=True)
        (ws / "notes.txt").write_text("one\ntwo\n")
        (ws / "config.yaml").write_text("llm: {}\n")
        (ws / "sessions" / "x.jsonl").write_text("{}\n")
        (ws / "out").symlink_to(outside)
        (ws / "filelink").symlink_to(outside / "secret.txt")
        (ws / "loop").symlink_to(ws / "loop")
        yield parent


def _fake_getaddrinfo(host: Any, *_args: Any, **_kw: Any) -> Any:
    """Offline: the name is checked as the real call does (IDNA), then it does not resolve."""
    if isinstance(host, str):
        host.encode("idna")
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


@FAST
@given(call=calls())
def test_random_tool_calls(call: ToolCall, sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", _fake_getaddrinfo)
    monkeypatch.setenv("HOME", str(sandbox / "outside"))
    ws = sandbox / "ws"
    ctx = ToolContext(ws, CONFIG, protected=(ws / "config.yaml",), session_key="fuzz")
    before = _snapshot(sandbox, ws)
    registry = REGISTRY.subset()
    block = asyncio.run(registry.run(call, ctx))
    assert block["type"] == "tool_result" and block["tool_use_id"] == "call-1"
    assert isinstance(block["is_error"], bool)
    assert isinstance(block["content"], str | list)
    assert registry.incidents == 0, block["content"]
    assert _snapshot(sandbox, ws) == before
    assert (ws / "config.yaml").read_text() == "llm: {}\n" and (ws / "sessions" / "x.jsonl").read_text() == "{}\n"


@pytest.mark.parametrize("path", ["loop", "."])
def test_a_symlink_loop_is_not_an_internal_error(sandbox: Path, path: str) -> None:
    ctx = ToolContext(sandbox / "ws", CONFIG)
    registry = REGISTRY.subset()
    for name in ("list_dir", "read_file", "search_files"):
        args = {"path": path, "pattern": "x"} if name == "search_files" else {"path": path}
        asyncio.run(registry.run(ToolCall("c", name, args), ctx))
    assert registry.incidents == 0


VALID = {"path": "notes.txt", "content": "x", "old": "one", "new": "uno", "pattern": "o", "url": "http://10.0.0.1/"}


@pytest.mark.parametrize("spec", REGISTRY.specs(), ids=lambda spec: spec.name)
def test_each_hostile_string_in_each_parameter(spec: Any, sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every hostile text in every string parameter, the other parameters valid: the rare combinations
    a random search would need thousands of examples to reach."""
    monkeypatch.setattr(socket, "getaddrinfo", _fake_getaddrinfo)
    ws = sandbox / "ws"
    ctx = ToolContext(ws, CONFIG, protected=(ws / "config.yaml",), session_key="fuzz")
    props: dict[str, Any] = spec.parameters["properties"]
    base = {key: VALID[key] for key in props if key in VALID}
    registry = REGISTRY.subset()
    before = _snapshot(sandbox, ws)

    async def run_all() -> None:
        for key in (k for k, prop in props.items() if prop.get("type") == "string"):
            for value in [*PATHS, *TEXTS]:
                block = await registry.run(ToolCall("c", spec.name, {**base, key: value}), ctx)
                assert block["type"] == "tool_result" and isinstance(block["is_error"], bool)
                assert registry.incidents == 0, (key, value[:50], block["content"])

    asyncio.run(run_all())
    assert _snapshot(sandbox, ws) == before
