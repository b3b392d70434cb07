"""The ``use_skill`` tool: the model reads a skill's instructions, or a file beside them, on demand.

    library.register(registry)
    await registry.run(ToolCall("1", "use_skill", {"name": "github"}), ctx)
    # "Skill folder: /…/skills/github (other files: references/api.md)\n\n# GitHub\n..."

Only files inside the skill's folder can be read: paths and symlinks that lead out of it are refused,
and so are binary and very large files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from agent.errors import ToolError
from agent.tools.registry import ToolContext, ToolRegistry
from skills.skill import SKILL_FILE, Skill

if TYPE_CHECKING:
    from skills.loader import SkillLibrary

MAX_FILE_BYTES = 1_000_000
MAX_LISTED = 100
SNIFF_BYTES = 8192
SKIP_DIRS = frozenset({".git", "__pycache__", "node_modules", ".venv"})


def register(library: SkillLibrary, registry: ToolRegistry) -> None:
    async def use_skill(ctx: ToolContext, name: str, file: str | None = None) -> str:
        """Read a skill's instructions before doing the task it covers (the system prompt lists the skills).

        Args:
            name: The skill's name as listed, e.g. "github".
            file: A file in the skill's folder that its instructions mention, as a path relative to the
                folder (e.g. "references/api.md"); omit it to read the instructions themselves.
        """
        return read_skill(library, name, file)

    registry.register(use_skill, read_only=True)


def read_skill(library: SkillLibrary, name: str, file: str | None = None) -> str:
    """The body of skill ``name`` under a line naming its folder and files, or one of those files."""
    skill = library.get(name.strip())
    if skill is None:
        names = ", ".join(s.name for s in library.skills()) or "none"
        broken = [p for p in library.problems() if f"/{name.strip()}/{SKILL_FILE}:" in p]
        why = f" Its SKILL.md has a problem: {broken[0]}." if broken else ""
        raise ToolError(f"Unknown skill {name!r}.{why} Available skills: {names}.")
    if not skill.available and skill.requires.missing(library.tool_names()):  # a command installed since counts
        raise ToolError(f"The skill {skill.name!r} cannot be used on this machine: {'; '.join(skill.missing)}. "
                        "Tell the person what it needs instead of following it.")
    if file:
        return read_file_in(skill, file)
    others = [f for f in list_files(skill.folder) if f != SKILL_FILE]
    listing = f" (other files: {', '.join(others)})" if others else " (no other files)"
    return f"Skill folder: {skill.folder}{listing}\n\n{skill.body}"


def read_file_in(skill: Skill, file: str) -> str:
    """The text of ``file`` inside the skill's folder; ToolError if it leads outside or is not text."""
    root = skill.folder.resolve()
    target = (root / file).resolve()
    if "\x00" in file or not target.is_relative_to(root):
        raise ToolError(f"{file!r} is outside the folder of skill {skill.name!r}; "
                        "give a path relative to that folder.")
    if not target.is_file():
        files = ", ".join(list_files(skill.folder)) or "none"
        raise ToolError(f"No file {file!r} in skill {skill.name!r}. Its files: {files}.")
    try:
        size = target.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ToolError(f"{file} is {size // 1000} KB, over the {MAX_FILE_BYTES // 1000} KB limit for "
                            "skill files; read a part of it with read_file or exec if those tools are available.")
        data = target.read_bytes()
    except OSError as exc:
        raise ToolError(f"{file} in skill {skill.name!r} cannot be read ({exc.strerror}).") from None
    try:
        if b"\x00" in data[:SNIFF_BYTES]:
            raise UnicodeDecodeError("utf-8", data, 0, 1, "NUL byte")
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ToolError(f"{file} in skill {skill.name!r} is not a text file; it is meant to be used "
                        "as it is (for example run or copied), not read.") from None


def list_files(folder: Path, limit: int = MAX_LISTED) -> list[str]:
    """Files under ``folder`` as sorted relative paths, skipping VCS and cache folders; capped."""
    found: list[str] = []
    for here, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        base = Path(here).relative_to(folder)
        found += [(base / name).as_posix() for name in files]
    found.sort()
    if len(found) > limit:
        return [*found[:limit], f"... and {len(found) - limit} more"]
    return found
