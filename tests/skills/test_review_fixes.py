"""Regression tests for hostile or unusual skill folders: FIFOs, links, terminal escapes, huge bodies."""

from __future__ import annotations

import io
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from agent.cli import main
from agent.errors import SkillError
from skills import SkillLibrary
from skills.install import Fetched, Plan, install, prepare
from skills.skill import InvalidSkill, parse_skill, skill_from
from tests.skills.conftest import MakeSkill, approve


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def deadline() -> Iterator[None]:
    """Fail (instead of hanging the suite) when the code under test blocks."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError("blocked")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(5)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"workspace": str(tmp_path / "ws")}))
    return path


def skill(config: Path, *args: str) -> int:
    return main(["skill", *args, "--config", str(config)])


# --- K1: SKILL.md must be a regular file, read with a limit --------------------------------------


def test_a_fifo_skill_file_is_a_problem_not_a_hang(user_dir: Path, deadline: None) -> None:
    (user_dir / "pipe").mkdir()
    os.mkfifo(user_dir / "pipe" / "SKILL.md")
    (problem,) = SkillLibrary(user_dir=user_dir, bundled_dir=None).problems()
    assert "pipe/SKILL.md: not a regular file" in problem


def test_a_skill_file_linked_to_dev_zero_is_not_read(user_dir: Path, deadline: None) -> None:
    (user_dir / "zero").mkdir()
    (user_dir / "zero" / "SKILL.md").symlink_to("/dev/zero")
    (problem,) = SkillLibrary(user_dir=user_dir, bundled_dir=None).problems()
    assert "zero/SKILL.md: is a symbolic link" in problem


def test_install_rejects_a_link_to_dev_zero_before_reading_it(tmp_path: Path, deadline: None) -> None:
    folder = tmp_path / "evil"
    folder.mkdir()
    (folder / "SKILL.md").symlink_to("/dev/zero")
    with pytest.raises(SkillError, match="outside the skill's folder"):
        prepare(Fetched(folder, "evil", str(folder)))


# --- K2: nothing from the skill reaches the terminal raw ------------------------------------------

ANSI = "---\nname: loud\ndescription: Loud.\n{extra}---\n\n\x1b[2J\x1b]0;pwned\x07Hello\n\tindented\n"


def test_install_escapes_control_characters(config: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "src" / "loud"
    folder.mkdir(parents=True)
    (folder / "SKILL.md").write_text(ANSI.format(extra=""))
    assert skill(config, "install", str(folder), "--yes") == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b[2J\\x1b]0;pwned\\x07Hello\n\tindented" in out
    assert skill(config, "show", "loud") == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b[2J" in out


def test_install_rejects_control_characters_in_file_names(tmp_path: Path) -> None:
    folder = tmp_path / "src" / "names"
    folder.mkdir(parents=True)
    (folder / "SKILL.md").write_text("---\nname: names\ndescription: Names.\n---\nBody.\n")
    (folder / "a\x1b[31mb.txt").write_text("x")
    with pytest.raises(SkillError, match=r"a\\x1b\[31mb.txt has a control character"):
        prepare(Fetched(folder, "names", str(folder)))


def test_the_question_says_always_on_and_overrides(config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "src" / "cron"
    folder.mkdir(parents=True)
    (folder / "SKILL.md").write_text("---\nname: cron\ndescription: Mine.\nalways: true\n---\nBody.\n")
    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    assert skill(config, "install", str(folder)) == 1
    out = capsys.readouterr().out
    question = next(line for line in out.splitlines() if line.startswith("Install skill cron"))
    assert "its instructions are added to every conversation" in question
    assert "it overrides the bundled skill cron" in question and question.endswith("? [y/N] ")


# --- K4: always-on bodies are capped --------------------------------------------------------------


def test_an_oversized_always_skill_is_listed_not_inlined(user_dir: Path, make_skill: MakeSkill) -> None:
    make_skill(user_dir, "big", "Big rules.", "B" * 9_000, extra="always: true\n")
    make_skill(user_dir, "small", "Small rules.", "S" * 100, extra="always: true\n")
    approve(user_dir, "big")
    approve(user_dir, "small")
    lib = SkillLibrary(user_dir=user_dir, bundled_dir=None)
    text = lib.prompt_text()
    assert "B" * 100 not in text and "- big: Big rules." in text and "S" * 100 in text
    big = lib.get("big")
    assert big is not None and not big.always
    (problem,) = lib.problems()
    assert "big/SKILL.md: `always: true` is ignored because the body is 9,000 characters" in problem


# --- K7: names match in full ----------------------------------------------------------------------


def test_a_name_with_a_trailing_newline_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(InvalidSkill, match="not a valid skill name"):
        skill_from({"description": "x"}, "", tmp_path, "workspace", "abc\n")


# --- K9: metadata is a free map; odd values do not reject a skill ---------------------------------

LENIENT = [
    ("metadata: {requires: python3}\n", ()),
    ("metadata: {os: 7, always: true}\n", ()),
    ("metadata: {agent: {requires: {bins: 5, env: [HOME]}, os: {x: 1}}}\n", ()),
    ("requires: [gh]\n", ()),
    ("metadata: {agent: {requires: {bins: [sh]}}}\n", ("sh",)),
]


@pytest.mark.parametrize(("extra", "bins"), LENIENT)
def test_odd_requirement_values_are_ignored(user_dir: Path, make_skill: MakeSkill, extra: str,
                                           bins: tuple[str, ...]) -> None:
    folder = make_skill(user_dir, "odd", extra=extra)
    parsed = parse_skill(folder, "workspace")
    assert parsed.requires.bins == bins and not parsed.requires.os and not parsed.always


@pytest.mark.parametrize(("value", "expected"), [("2024-01-02", "2024-01-02"), ("42", "42"), ("1.5", "1.5")])
def test_a_scalar_description_is_converted(user_dir: Path, make_skill: MakeSkill, value: str,
                                           expected: str) -> None:
    assert parse_skill(make_skill(user_dir, "dated", value), "workspace").description == expected


# --- K10: file system errors during install are SkillErrors ---------------------------------------


def test_install_into_a_file_is_a_skill_error(tmp_path: Path, make_skill: MakeSkill) -> None:
    folder = make_skill(tmp_path / "src", "greet")
    plan: Plan = prepare(Fetched(folder, "greet", str(folder)))
    blocker = tmp_path / "skills"
    blocker.write_text("not a folder")
    with pytest.raises(SkillError, match=f"Could not install skill greet into {blocker}/greet: {blocker}: "):
        install(plan, blocker, force=False)
