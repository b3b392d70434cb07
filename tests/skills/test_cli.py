"""``reverie skill list | show | remove`` through ``agent.cli.main`` with a temporary config."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import main
from tests.skills.conftest import MakeSkill

pytestmark = pytest.mark.usefixtures("no_terminal")


def skill(config: Path, *args: str) -> int:
    return main(["skill", *args, "--config", str(config)])


def test_list_shows_sources_overrides_availability_and_problems(
        config: Path, user_dir: Path, make_skill: MakeSkill, capsys: pytest.CaptureFixture[str]) -> None:
    make_skill(user_dir, "weather", "My own weather.")
    make_skill(user_dir, "gated", "Gated.", extra="requires: {env: [REVERIE_TEST_UNSET_VAR]}\n")
    (user_dir / "broken").mkdir()
    (user_dir / "broken" / "SKILL.md").write_text("no frontmatter here\n")
    assert skill(config, "list") == 0
    assert "weather        bundled, available" in capsys.readouterr().out  # not approved yet
    assert skill(config, "approve", "weather", "--yes") == 0
    assert "Approved this version of weather" in capsys.readouterr().out
    assert skill(config, "list") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"7 skills (bundled with reverie, and yours in {user_dir}):\n")
    assert "  weather        workspace, overrides bundled, available\n" in out
    assert "  gated          workspace, unavailable: needs the environment variable REVERIE_TEST_UNSET_VAR\n" in out
    assert "  cron           bundled, available\n" in out and "My own weather." in out
    assert out.endswith(f"Problems (a skill with a broken SKILL.md is skipped):\n  {user_dir}/broken/SKILL.md: no frontmatter; "
                        "the file must start with a '---' line, then `name:` and `description:`, then another "
                        "'---' line\n")


def test_show_prints_folder_files_and_text(config: Path, user_dir: Path, make_skill: MakeSkill,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_skill(user_dir, "notes", "Keep notes.", "Write them down.")
    (folder / "template.md").write_text("# Note\n")
    assert skill(config, "show", "notes") == 0
    out = capsys.readouterr().out
    assert out == (f"notes (workspace, available)\nFolder: {folder}\nFiles: SKILL.md, template.md\n\n"
                   "---\nname: notes\ndescription: Keep notes.\n---\n\nWrite them down.\n")
    assert skill(config, "show", "nope") == 1
    assert "No skill named 'nope'. Skills: cron, github, memory, notes," in capsys.readouterr().err
    assert skill(config, "show") == 2
    assert "reverie skill show NAME" in capsys.readouterr().err


def test_remove_a_workspace_skill_brings_back_the_bundled_one(
        config: Path, user_dir: Path, make_skill: MakeSkill, capsys: pytest.CaptureFixture[str]) -> None:
    make_skill(user_dir, "weather", "My own weather.")
    assert skill(config, "remove", "weather") == 2
    assert "pass --yes" in capsys.readouterr().err and (user_dir / "weather").exists()
    assert skill(config, "remove", "weather", "--yes") == 0
    out = capsys.readouterr().out
    assert f"Removed skill weather from {user_dir / 'weather'}." in out and "bundled skill weather is used again" in out
    assert list(user_dir.iterdir()) == []


def test_bundled_and_unknown_skills_cannot_be_removed(config: Path, user_dir: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert skill(config, "remove", "cron", "--yes") == 1
    err = capsys.readouterr().err
    assert "cron is bundled with reverie and cannot be removed" in err
    assert f"{user_dir / 'cron'}/SKILL.md and approve it with `reverie skill approve cron`" in err
    assert skill(config, "remove", "../../etc", "--yes") == 1
    assert "No skill named '../../etc'" in capsys.readouterr().err


def test_a_broken_skill_can_be_removed(config: Path, user_dir: Path) -> None:
    (user_dir / "broken").mkdir()
    (user_dir / "broken" / "SKILL.md").write_text("oops\n")
    assert skill(config, "remove", "broken", "--yes") == 0
    assert not (user_dir / "broken").exists()
