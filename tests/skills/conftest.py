"""Helpers for the skills tests: write skill folders the way a person would."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

MakeSkill = Callable[..., Path]


def write_skill(root: Path, name: str, description: str = "Does a thing. Use when asked to do the thing.",
                body: str = "Step one.", extra: str = "") -> Path:
    """``root/name/SKILL.md`` with that frontmatter (``extra`` is more YAML lines) and body."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "SKILL.md").write_text(f"---\nname: {name}\ndescription: {description}\n{extra}---\n\n{body}\n")
    return folder


@pytest.fixture
def user_dir(tmp_path: Path) -> Path:
    path = tmp_path / "ws" / "skills"
    path.mkdir(parents=True)
    return path


@pytest.fixture
def bundled_dir(tmp_path: Path) -> Path:
    path = tmp_path / "bundled"
    path.mkdir()
    return path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config file whose workspace is ``tmp_path/ws`` (so ``user_dir`` is its skills folder)."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"workspace": str(tmp_path / "ws")}))
    return path


@pytest.fixture
def no_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nobody at the keyboard: stdin is empty and not a terminal."""
    monkeypatch.setattr("sys.stdin", io.StringIO(""))


@pytest.fixture
def make_skill() -> MakeSkill:
    return write_skill


def approve(user_dir: Path, name: str) -> None:
    """What `reverie skill approve NAME` records: the owner's yes to this version of the skill."""
    from skills.approval import Approvals
    from skills.loader import APPROVALS_FILE
    from skills.skill import parse_skill

    Approvals(user_dir.parent / "state" / APPROVALS_FILE).approve(parse_skill(user_dir / name, "workspace"))
