"""Helpers for the skills tests: write skill folders the way a person would."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

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
def make_skill() -> MakeSkill:
    return write_skill


def approve(user_dir: Path, name: str) -> None:
    """What `reverie skill approve NAME` records: the owner's yes to this version of the skill."""
    from skills.approval import Approvals
    from skills.loader import APPROVALS_FILE
    from skills.skill import parse_skill

    Approvals(user_dir.parent / "state" / APPROVALS_FILE).approve(parse_skill(user_dir / name, "workspace"))
