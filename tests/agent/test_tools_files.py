"""File tools on real files: windows, atomic edits, and every way out of the workspace refused."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from agent.config import ToolsConfig
from agent.errors import ToolError
from agent.tools import ToolContext, builtin_registry
from agent.tools.files import resolve_path
from agent.types import Block, ToolCall

SECRET = "sk-do-not-leak-0123456789"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    path = tmp_path / "outside"
    path.mkdir()
    (path / "secret.txt").write_text(f"outside {SECRET}\n")
    return path


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "notes.md").write_text("alpha\nbeta\ngamma\n")
    for private in ("sessions", "logs", "cron", "pairing", "state"):
        (ws / private).mkdir()
        (ws / private / "data.jsonl").write_text(f"{private} {SECRET}\n")
    (ws / "config.yaml").write_text(f"api_key: {SECRET}\n")
    (ws / "usage.jsonl").write_text(f"{SECRET}\n")
    (ws / ".env").write_text(f"KEY={SECRET}\n")
    (ws / "sub").mkdir()
    (ws / "sub" / "prod.env").write_text(f"KEY={SECRET}\n")
    return ws


def make_ctx(workspace: Path, *, restrict: bool = True, protected: tuple[Path, ...] = ()) -> ToolContext:
    return ToolContext(workspace=workspace, config=ToolsConfig(restrict_to_workspace=restrict),
                       protected=protected)


@pytest.fixture
def ctx(workspace: Path) -> ToolContext:
    return make_ctx(workspace)


async def run(ctx: ToolContext, name: str, **arguments: Any) -> Block:
    return await builtin_registry(ctx.config).run(ToolCall("t1", name, arguments), ctx)


async def ok(ctx: ToolContext, name: str, **arguments: Any) -> str:
    result = await run(ctx, name, **arguments)
    assert result["is_error"] is False, result["content"]
    return str(result["content"])


async def refused(ctx: ToolContext, name: str, **arguments: Any) -> str:
    result = await run(ctx, name, **arguments)
    assert result["is_error"] is True, result["content"]
    assert SECRET not in result["content"]
    return str(result["content"])


# --- reading, writing, editing --------------------------------------------------------------------


async def test_read_file_numbers_lines_and_windows(ctx: ToolContext, workspace: Path) -> None:
    assert await ok(ctx, "read_file", path="notes.md") == "     1\talpha\n     2\tbeta\n     3\tgamma"
    window = await ok(ctx, "read_file", path="notes.md", offset=1, limit=1)
    assert window == "     2\tbeta\n[lines 2-2 of 3; call read_file with offset=2 for more]"
    assert "past the end" in await refused(ctx, "read_file", path="notes.md", offset=9)
    assert "No such file" in await refused(ctx, "read_file", path="nope.md")
    assert "is a directory" in await refused(ctx, "read_file", path="sub")


async def test_read_file_stops_before_result_limit(ctx: ToolContext, workspace: Path) -> None:
    (workspace / "long.txt").write_text("".join(f"line {i} " + "x" * 90 + "\n" for i in range(1000)))
    text = await ok(ctx, "read_file", path="long.txt")
    assert len(text) <= ctx.config.max_result_chars
    assert re.search(r"\n\[lines 1-(\d+) of 1000; call read_file with offset=\1 for more\]$", text)
    assert "truncated" not in text


async def test_read_file_refuses_binary_and_huge(ctx: ToolContext, workspace: Path) -> None:
    (workspace / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert "binary file" in await refused(ctx, "read_file", path="image.png")
    with open(workspace / "huge.log", "wb") as fh:
        fh.truncate(11_000_000)  # sparse: instant
    assert "too large" in await refused(ctx, "read_file", path="huge.log")


async def test_write_file_creates_parents_atomically(ctx: ToolContext, workspace: Path) -> None:
    message = await ok(ctx, "write_file", path="a/b/new.txt", content="one\ntwo\n")
    assert message == "Wrote 8 characters (2 lines) to a/b/new.txt."
    assert (workspace / "a/b/new.txt").read_text() == "one\ntwo\n"
    await ok(ctx, "write_file", path="a/b/new.txt", content="three")
    assert (workspace / "a/b/new.txt").read_text() == "three"
    assert os.listdir(workspace / "a/b") == ["new.txt"]  # no temp files left behind


async def test_edit_file_exact_replace(ctx: ToolContext, workspace: Path) -> None:
    assert await ok(ctx, "edit_file", path="notes.md", old="beta", new="BETA") == "Replaced 1 occurrence in notes.md."
    assert (workspace / "notes.md").read_text() == "alpha\nBETA\ngamma\n"
    assert "not found" in await refused(ctx, "edit_file", path="notes.md", old="delta", new="x")


async def test_edit_file_ambiguity_says_how_many(ctx: ToolContext, workspace: Path) -> None:
    (workspace / "dup.txt").write_text("x = 1\nx = 1\nx = 1\n")
    message = await refused(ctx, "edit_file", path="dup.txt", old="x = 1", new="x = 2")
    assert "occurs 3 times" in message and "replace_all" in message
    assert (workspace / "dup.txt").read_text() == "x = 1\nx = 1\nx = 1\n"
    assert "Replaced 3 occurrences" in await ok(ctx, "edit_file", path="dup.txt", old="x = 1", new="y",
                                                replace_all=True)
    assert (workspace / "dup.txt").read_text() == "y\ny\ny\n"


async def test_list_dir_hides_private_entries(ctx: ToolContext, workspace: Path) -> None:
    listing = await ok(ctx, "list_dir")
    assert "notes.md  (17 bytes)" in listing and "sub/" in listing
    for hidden in ("sessions", "logs", "cron", "pairing", "state", "config.yaml", "usage.jsonl", ".env"):
        assert hidden not in listing
    assert "prod.env" not in await ok(ctx, "list_dir", path="sub")
    assert "private to reverie" in await refused(ctx, "list_dir", path="sessions")


async def test_search_files_finds_text_and_skips_private(ctx: ToolContext, workspace: Path) -> None:
    (workspace / "sub" / "code.py").write_text(f"token = '{SECRET}'  # a test fixture\nprint(1)\n")
    (workspace / "sub" / "blob.bin").write_bytes(b"\x00\x01 sk-do-not-leak")
    found = await ok(ctx, "search_files", pattern="gamma|print")
    assert found.splitlines() == ["notes.md:3: gamma", "sub/code.py:2: print(1)"]
    leaks = await ok(ctx, "search_files", pattern="sk-do-not-leak", glob="*.py")
    assert leaks.splitlines() == [f"sub/code.py:1: token = '{SECRET}'  # a test fixture"]
    everything = await ok(ctx, "search_files", pattern="sk-do-not-leak")
    assert everything.splitlines() == leaks.splitlines()  # not config, sessions, .env nor the binary
    assert "No matches" in await ok(ctx, "search_files", pattern="zzz", path="sub")
    assert "Invalid regular expression" in await refused(ctx, "search_files", pattern="(")


async def test_search_files_caps_results(ctx: ToolContext, workspace: Path) -> None:
    (workspace / "many.txt").write_text("hit\n" * 500)
    lines = (await ok(ctx, "search_files", pattern="hit")).splitlines()
    assert len(lines) == 201 and "stopped after 200 matches" in lines[-1]


# --- escapes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["../outside/secret.txt", "sub/../../outside/secret.txt"])
async def test_dotdot_escape_refused(ctx: ToolContext, path: str) -> None:
    message = await refused(ctx, "read_file", path=path)
    assert message.startswith(f"path escapes the workspace: {path}. Use a path inside {ctx.workspace}")


async def test_absolute_path_outside_refused(ctx: ToolContext, outside: Path) -> None:
    assert "escapes the workspace" in await refused(ctx, "read_file", path=str(outside / "secret.txt"))
    assert "escapes the workspace" in await refused(ctx, "write_file", path=str(outside / "new.txt"),
                                                    content="x")
    assert not (outside / "new.txt").exists()
    assert "escapes the workspace" in await refused(ctx, "list_dir", path=str(outside))
    assert "escapes the workspace" in await refused(ctx, "search_files", pattern=".", path=str(outside))


async def test_absolute_path_inside_allowed(ctx: ToolContext, workspace: Path) -> None:
    assert "alpha" in await ok(ctx, "read_file", path=str(workspace / "notes.md"))


async def test_symlink_out_refused_and_hidden(ctx: ToolContext, workspace: Path, outside: Path) -> None:
    (workspace / "link.txt").symlink_to(outside / "secret.txt")
    (workspace / "linkdir").symlink_to(outside)
    assert "escapes the workspace" in await refused(ctx, "read_file", path="link.txt")
    assert "escapes the workspace" in await refused(ctx, "read_file", path="linkdir/secret.txt")
    assert "escapes the workspace" in await refused(ctx, "edit_file", path="link.txt", old="outside", new="x")
    assert "escapes the workspace" in await refused(ctx, "write_file", path="linkdir/new.txt", content="x")
    assert not (outside / "new.txt").exists()
    assert (outside / "secret.txt").read_text().startswith("outside")
    listing = await ok(ctx, "list_dir")
    assert "link.txt" not in listing and "linkdir" not in listing
    assert SECRET not in await ok(ctx, "search_files", pattern="leak")


async def test_symlink_inside_workspace_allowed(ctx: ToolContext, workspace: Path) -> None:
    (workspace / "alias.md").symlink_to(workspace / "notes.md")
    assert "beta" in await ok(ctx, "read_file", path="alias.md")
    assert "alias.md@" in await ok(ctx, "list_dir")


@pytest.mark.parametrize("path", ["config.yaml", "CONFIG.YAML", "sessions/data.jsonl", "logs/data.jsonl",
                                  "cron/data.jsonl", "pairing/data.jsonl", "usage.jsonl", ".env",
                                  "sub/prod.env", "sub/../.env", "./sessions", ".env.local", "memory/MEMORY.md",
                                  "memory/.git/config", "state/dream.json"])
async def test_private_names_refused(ctx: ToolContext, path: str) -> None:
    for name, args in (("read_file", {}), ("write_file", {"content": "x"}),
                       ("edit_file", {"old": "a", "new": "b"})):
        message = await refused(ctx, name, path=path, **args)
        assert "private to reverie" in message, (name, message)
    assert (ctx.workspace / "config.yaml").read_text().startswith("api_key")


async def test_symlink_to_private_file_refused(ctx: ToolContext, workspace: Path) -> None:
    (workspace / "innocent.txt").symlink_to(workspace / "config.yaml")
    (workspace / "history").symlink_to(workspace / "sessions")
    assert "private to reverie" in await refused(ctx, "read_file", path="innocent.txt")
    assert "private to reverie" in await refused(ctx, "read_file", path="history/data.jsonl")
    listing = await ok(ctx, "list_dir")
    assert "innocent" not in listing and "history" not in listing


async def test_protected_config_path_refused_even_unrestricted(tmp_path: Path, workspace: Path) -> None:
    config_file = tmp_path / "etc" / "reverie.yaml"
    config_file.parent.mkdir()
    config_file.write_text(f"token: {SECRET}\n")
    ctx = make_ctx(workspace, restrict=False, protected=(config_file,))
    assert "private to reverie" in await refused(ctx, "read_file", path=str(config_file))
    assert "private to reverie" in await refused(ctx, "read_file", path="../etc/reverie.yaml")
    assert "private to reverie" in await refused(ctx, "write_file", path=str(config_file), content="x")
    (workspace / "cfg-link").symlink_to(config_file)
    assert "private to reverie" in await refused(ctx, "read_file", path="cfg-link")
    os.link(config_file, workspace / "hardlink.txt")
    assert "private to reverie" in await refused(ctx, "read_file", path="hardlink.txt")
    assert SECRET not in await ok(ctx, "search_files", pattern="token", path=str(tmp_path))
    assert "reverie.yaml" not in await ok(ctx, "list_dir", path=str(config_file.parent))
    assert "private to reverie" in await refused(ctx, "read_file", path="config.yaml")
    assert config_file.read_text() == f"token: {SECRET}\n"


async def test_unrestricted_allows_outside(workspace: Path, outside: Path) -> None:
    ctx = make_ctx(workspace, restrict=False)
    assert "outside" in await ok(ctx, "read_file", path="../outside/secret.txt")


def test_resolve_path_directly(ctx: ToolContext, workspace: Path) -> None:
    assert resolve_path(ctx, "sub/x.txt") == workspace.resolve() / "sub" / "x.txt"
    assert resolve_path(ctx, ".") == workspace.resolve()
    with pytest.raises(ToolError, match="escapes"):
        resolve_path(ctx, "/etc/passwd")
    with pytest.raises(ToolError, match="non-empty"):
        resolve_path(ctx, "")
