"""The skill library: bundled and workspace skills, cached by modification time.

    lib = SkillLibrary(user_dir=workspace / "skills")   # bundled_dir defaults to this package's folder
    lib.skills()          # [Skill(name="cron", ...), ...] sorted by name; workspace overrides bundled
    lib.get("github")     # Skill | None
    lib.problems()        # ["/…/skills/bad/SKILL.md: no description; ...", ...]
    lib.prompt_text()     # the block for the system prompt; "" when there are no skills
    lib.register(registry)  # adds the read-only `use_skill` tool

Every call stats the two roots and each SKILL.md, and re-parses only files whose modification time,
size or inode changed, so per-turn cost is a few stat calls and ``prompt_text()`` returns the very
same string while nothing changed (provider prompt caching depends on it). ``loads`` counts parses.
Requirements (commands, environment variables) are checked whenever anything changed.
Nothing here raises for a bad skill: it is skipped and reported by ``problems()``. An ``always: true``
skill whose body exceeds ALWAYS_CHARS is kept as an ordinary skill and reported there too.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING

from skills.approval import Approvals
from skills.skill import SKILL_FILE, InvalidSkill, Skill, Source, parse_skill

if TYPE_CHECKING:
    from agent.tools.registry import ToolRegistry

logger = logging.getLogger(__name__)
BUNDLED_DIR = Path(__file__).resolve().parent
PROMPT_TEMPLATE = BUNDLED_DIR / "prompt.md"
DESCRIPTION_CHARS = 200
ALWAYS_CHARS = 8_000  # an always-on body longer than this is listed like any other skill instead
APPROVALS_FILE = "skill-approvals.json"  # in <workspace>/state/

Stamp = tuple[int, int, int] | None  # (mtime_ns, size, inode), None when missing


@dataclass
class _Root:
    path: Path
    source: Source
    stamp: Stamp = None
    files: list[Path] = field(default_factory=list)  # each skill folder's SKILL.md
    texts: list[str] = field(default_factory=list)  # the same as strings

    @property
    def text(self) -> str:
        return os.fspath(self.path)


@dataclass(frozen=True)
class _Parsed:
    stamp: Stamp
    skill: Skill | None
    problem: str | None


class SkillLibrary:
    """Skills by name; see the module docstring."""

    def __init__(self, user_dir: Path | None = None, bundled_dir: Path | None = BUNDLED_DIR,
                 approvals: Approvals | None = None) -> None:
        roots: list[tuple[Path | None, Source]] = [(bundled_dir, "bundled"), (user_dir, "workspace")]
        self._roots = [_Root(Path(d).expanduser(), source) for d, source in roots if d is not None]
        if approvals is None and user_dir is not None:
            approvals = Approvals(Path(user_dir).expanduser().parent / "state" / APPROVALS_FILE)
        self.approvals = approvals
        self._parsed: dict[Path, _Parsed] = {}
        self._key: tuple[object, ...] | None = None
        self._skills: dict[str, Skill] = {}
        self._problems: list[str] = []
        self._text: str | None = None
        self.loads = 0  # SKILL.md files parsed so far: stays put while nothing changes
        self._registry: ToolRegistry | None = None

    def skills(self) -> list[Skill]:
        """Every usable skill (available or not), sorted by name."""
        self._refresh()
        return list(self._skills.values())

    def get(self, name: str) -> Skill | None:
        self._refresh()
        return self._skills.get(name)

    def problems(self) -> list[str]:
        """Skipped SKILL.md files (and always-on bodies over the cap) as "path: reason", sorted by path."""
        self._refresh()
        return list(self._problems)

    def prompt_text(self) -> str:
        """The system-prompt block: how to use skills, one line each, then the always-on bodies."""
        self._refresh()
        if self._text is None:
            self._text = render_prompt(list(self._skills.values()))
        return self._text

    def register(self, registry: ToolRegistry) -> None:
        """Add the ``use_skill`` tool (read-only) to ``registry``."""
        from skills.tool import register

        self._registry = registry  # skills that need a tool are unavailable without it
        register(self, registry)

    def tool_names(self) -> frozenset[str] | None:
        return frozenset(self._registry.names()) if self._registry is not None else None

    # --- cache ------------------------------------------------------------------------------------

    def _refresh(self) -> None:
        for root in self._roots:
            stamp = _stamp(root.text)
            if stamp != root.stamp:
                root.stamp = stamp
                root.files = [folder / SKILL_FILE for folder in _folders(root.path)]
                root.texts = [os.fspath(path) for path in root.files]  # os.stat on str: no pathlib per call
        stamps = tuple(_stamp(text) for root in self._roots for text in root.texts)
        # The file list follows from the root stamps, so these two say whether anything changed.
        approved = _stamp(os.fspath(self.approvals.path)) if self.approvals else None
        tools = self._registry.names() if self._registry is not None else None
        key = (tuple(root.stamp for root in self._roots), stamps, approved, tools)
        if key == self._key:
            return
        self._key = key
        files = [(root, path) for root in self._roots for path in root.files]
        parsed: dict[Path, _Parsed] = {}
        for (root, path), stamp in zip(files, stamps, strict=True):
            old = self._parsed.get(path)
            parsed[path] = old if old is not None and old.stamp == stamp else self._parse(root, path, stamp)
        self._parsed = parsed
        self._merge()

    def _parse(self, root: _Root, path: Path, stamp: Stamp) -> _Parsed:
        self.loads += 1
        try:
            return _Parsed(stamp, parse_skill(path.parent, root.source), None)
        except InvalidSkill as exc:
            return _Parsed(stamp, None, str(exc))
        except Exception:
            # A skill is user content and the daemon must keep running: a parser bug skips one skill.
            logger.exception("Unexpected error while reading %s", path)
            return _Parsed(stamp, None, f"{path}: unexpected error while reading it (see the log)")

    def _vetted(self, skill: Skill, overrides: bool) -> tuple[Skill, str | None]:
        """A workspace skill that reaches every conversation needs the owner's approval (skills/approval.py)."""
        if skill.source != "workspace" or not (skill.always or overrides) or self.approvals is None:
            return skill, None
        if self.approvals.approved(skill):
            return skill, None
        what = f"it replaces the bundled skill {skill.name}" if overrides else "`always: true` is ignored"
        return replace(skill, always=False), (f"{skill.path}: {what} until you approve this version: "
                                              f"reverie skill approve {skill.name}")

    def _merge(self) -> None:
        skills: dict[str, Skill] = {}
        problems = [p.problem for p in self._parsed.values() if p.problem]
        for parsed in self._parsed.values():  # bundled first, so workspace skills replace them
            skill = parsed.skill
            if skill is None:
                continue
            shadowed = skills.get(skill.name)
            overrides = shadowed is not None and shadowed.source == "bundled"
            skill, problem = self._vetted(skill, overrides)
            if problem:
                problems.append(problem)
                if overrides:
                    continue  # the bundled skill stays in effect until the owner approves the replacement
            # Requirements are rechecked on every rebuild: a command installed since counts.
            skills[skill.name] = replace(skill, missing=skill.requires.missing(self.tool_names()), overrides=overrides)
        for name, skill in skills.items():
            if skill.always and len(skill.body) > ALWAYS_CHARS:
                skills[name] = replace(skill, always=False)
                problems.append(f"{skill.path}: `always: true` is ignored because the body is {len(skill.body):,} "
                                f"characters and the limit is {ALWAYS_CHARS:,}; it is listed like other skills "
                                "(read with use_skill). Shorten it to keep it always on")
        self._skills = dict(sorted(skills.items()))
        for problem in sorted(set(problems) - set(self._problems)):  # each new problem once, in the daemon's log
            logger.warning("skill skipped or limited: %s", problem)
        self._problems = sorted(problems)
        self._text = None


def render_prompt(skills: list[Skill]) -> str:
    """The prompt block for these skills (sorted by name); "" when there are none."""
    if not skills:
        return ""
    lines = []
    for skill in skills:
        label = skill.name if skill.available else f"{skill.name} (unavailable: {'; '.join(skill.missing)})"
        lines.append(f"- {label}: {one_line(skill.description, DESCRIPTION_CHARS)}")
    always = [f"### Skill {skill.name} (always in effect)\n\n{skill.body}"
              for skill in skills if skill.always and skill.available and skill.body]
    template = Template(PROMPT_TEMPLATE.read_text(encoding="utf-8").strip())
    text = template.substitute(skills="\n".join(lines))
    return "\n\n".join([text, *always])


def one_line(text: str, limit: int) -> str:
    """``text`` with its whitespace squashed, cut to ``limit`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit - 1].rstrip() + "…"


def _stamp(path: str) -> Stamp:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def _folders(root: Path) -> list[Path]:
    """Skill folders under ``root``, sorted; names starting with '.' or '_' (caches, installs) are skipped."""
    try:
        entries = list(os.scandir(root))
    except OSError:
        return []
    return sorted(Path(e.path) for e in entries if e.name[0] not in "._" and _is_dir(e))


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False
