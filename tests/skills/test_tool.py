"""``use_skill`` through the real tool registry: bodies on demand, files inside the folder only."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from agent.config import ToolsConfig
from agent.tools import ToolContext, ToolRegistry
from agent.types import Block, ToolCall
from skills import SkillLibrary
from tests.skills.conftest import MakeSkill


@pytest.fixture
def lib(user_dir: Path, make_skill: MakeSkill) -> SkillLibrary:
    folder = make_skill(user_dir, "deploy", "Deploy the site.", "# Deploy\n\nRun the script.")
    (folder / "references").mkdir()
    (folder / "references" / "hosts.md").write_text("web1, web2\n")
    (folder / "deploy.sh").write_text("#!/bin/sh\necho deploy\n")
    (folder / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    make_skill(user_dir, "gated", extra="requires: {bins: [reverie-no-such-command-x4]}\n")
    return SkillLibrary(user_dir=user_dir, bundled_dir=None)


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    return ToolContext(workspace=tmp_path / "ws", config=ToolsConfig())


async def use(lib: SkillLibrary, ctx: ToolContext, **arguments: Any) -> Block:
    registry = ToolRegistry()
    lib.register(registry)
    return await registry.run(ToolCall("c1", "use_skill", arguments), ctx)


def test_the_tool_is_read_only_and_documented(lib: SkillLibrary) -> None:
    registry = ToolRegistry()
    lib.register(registry)
    (spec,) = registry.specs()
    assert spec.name == "use_skill" and registry.is_read_only("use_skill")
    assert spec.description.startswith("Read a skill's instructions")
    assert spec.parameters["required"] == ["name"] and set(spec.parameters["properties"]) == {"name", "file"}


async def test_use_skill_returns_the_body_with_folder_and_files(lib: SkillLibrary, ctx: ToolContext,
                                                               user_dir: Path) -> None:
    result = await use(lib, ctx, name="deploy")
    assert not result["is_error"]
    first, rest = result["content"].split("\n", 1)
    assert first == (f"Skill folder: {user_dir / 'deploy'} "
                     "(other files: deploy.sh, logo.png, references/hosts.md)")
    assert rest == "\n# Deploy\n\nRun the script."


async def test_reading_a_file_beside_the_skill(lib: SkillLibrary, ctx: ToolContext) -> None:
    result = await use(lib, ctx, name="deploy", file="references/hosts.md")
    assert (result["content"], result["is_error"]) == ("web1, web2\n", False)


@pytest.mark.parametrize("file", ["../gated/SKILL.md", "/etc/passwd", "references/../../gated/SKILL.md"])
async def test_paths_out_of_the_folder_are_refused(lib: SkillLibrary, ctx: ToolContext, file: str) -> None:
    result = await use(lib, ctx, name="deploy", file=file)
    assert result["is_error"] and "outside the folder of skill 'deploy'" in result["content"]


async def test_symlinks_out_of_the_folder_are_refused(lib: SkillLibrary, ctx: ToolContext, user_dir: Path,
                                                      tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("top secret")
    os.symlink(tmp_path / "secret.txt", user_dir / "deploy" / "notes.md")
    os.symlink(tmp_path, user_dir / "deploy" / "up")
    for file in ("notes.md", "up/secret.txt"):
        result = await use(lib, ctx, name="deploy", file=file)
        assert result["is_error"] and "outside the folder" in result["content"]
        assert "top secret" not in result["content"]


async def test_binary_missing_and_huge_files(lib: SkillLibrary, ctx: ToolContext, user_dir: Path) -> None:
    result = await use(lib, ctx, name="deploy", file="logo.png")
    assert result["is_error"] and "not a text file" in result["content"]
    result = await use(lib, ctx, name="deploy", file="nope.md")
    assert result["is_error"] and "No file 'nope.md'" in result["content"] and "references/hosts.md" in result["content"]
    (user_dir / "deploy" / "big.txt").write_text("x" * 1_000_001)
    result = await use(lib, ctx, name="deploy", file="big.txt")
    assert result["is_error"] and "over the 1000 KB limit" in result["content"]


async def test_unknown_skill_lists_the_skills(lib: SkillLibrary, ctx: ToolContext) -> None:
    result = await use(lib, ctx, name="depoly")
    assert result["is_error"] and result["content"] == "Unknown skill 'depoly'. Available skills: deploy, gated."


async def test_unavailable_skill_says_why(lib: SkillLibrary, ctx: ToolContext) -> None:
    result = await use(lib, ctx, name="gated")
    assert result["is_error"] and "needs the `reverie-no-such-command-x4` command" in result["content"]


async def test_an_edit_is_read_on_the_next_call(lib: SkillLibrary, ctx: ToolContext, user_dir: Path) -> None:
    path = user_dir / "deploy" / "SKILL.md"
    path.write_text("---\ndescription: Deploy.\n---\nNew steps.\n")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**10))
    result = await use(lib, ctx, name="deploy")
    assert result["content"].endswith("\n\nNew steps.")


async def test_a_broken_skill_says_why(lib: SkillLibrary, ctx: ToolContext, user_dir: Path,
                                       caplog: pytest.LogCaptureFixture) -> None:
    (user_dir / "draft").mkdir()
    (user_dir / "draft" / "SKILL.md").write_text("---\nname: draft\n---\nno description\n")
    result = await use(lib, ctx, name="draft")
    assert result["is_error"] and "Its SKILL.md has a problem" in result["content"]
    assert "description" in result["content"]
    await use(lib, ctx, name="draft")
    assert sum("draft/SKILL.md" in r.getMessage() for r in caplog.records) == 1  # logged once, not per call


async def test_a_requirement_met_later_counts_without_an_edit(user_dir: Path, make_skill: MakeSkill, ctx: ToolContext,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    make_skill(user_dir, "keyed", "Needs a key.", "Use the key.", extra="requires: {env: [REVERIE_TEST_LATER_KEY]}\n")
    lib = SkillLibrary(user_dir=user_dir, bundled_dir=None)
    assert (await use(lib, ctx, name="keyed"))["is_error"]
    monkeypatch.setenv("REVERIE_TEST_LATER_KEY", "set-now")
    result = await use(lib, ctx, name="keyed")
    assert not result["is_error"] and "Use the key." in result["content"]


async def test_a_skill_that_needs_a_tool_waits_for_it(user_dir: Path, make_skill: MakeSkill, ctx: ToolContext) -> None:
    make_skill(user_dir, "remind", "Reminders.", "Use the cron tool.", extra="requires: {tools: [cron]}\n")
    lib = SkillLibrary(user_dir=user_dir, bundled_dir=None)
    registry = ToolRegistry()
    lib.register(registry)
    assert "- remind (unavailable: needs the cron tool (not enabled)): Reminders." in lib.prompt_text()
    result = await registry.run(ToolCall("c1", "use_skill", {"name": "remind"}), ctx)
    assert result["is_error"] and "needs the cron tool" in result["content"]

    async def cron(ctx: ToolContext) -> str:
        """Schedule things."""
        return "ok"

    registry.register(cron)  # e.g. an MCP server came up, or the feature was turned on
    assert "- remind: Reminders." in lib.prompt_text()
    assert not (await registry.run(ToolCall("c2", "use_skill", {"name": "remind"}), ctx))["is_error"]
