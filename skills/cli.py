"""``reverie skill list | show NAME | install PATH_OR_GIT_URL | remove NAME``.

    reverie skill list                                  # every skill, where it comes from, whether usable
    reverie skill show github                           # its folder, files and SKILL.md
    reverie skill install ./my-skill                    # asks first; --yes to skip, --force to replace
    reverie skill install https://host/owner/skills.git#pdf
    reverie skill remove pdf                            # workspace skills only
    reverie skill approve pdf                           # let a hand-written skill be always-on or override
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent.chat import load_from_args
from agent.errors import ConfigError, SkillError
from skills.install import fetch, install, prepare, remove
from skills.loader import SkillLibrary, one_line
from skills.skill import NAME, InvalidSkill, Skill, escape, parse_skill, read_limited
from skills.tool import list_files

USAGE = {"show": "reverie skill show NAME", "remove": "reverie skill remove NAME",
         "approve": "reverie skill approve NAME",
         "install": "reverie skill install PATH_OR_GIT_URL"}


def run_skill(args: argparse.Namespace) -> int:
    config, _ = load_from_args(args, need_model=False)
    skills_dir = config.workspace_path / "skills"
    library = SkillLibrary(user_dir=skills_dir)
    target = (getattr(args, "target", None) or "").strip()
    if args.action == "list":
        return list_skills(library, skills_dir)
    if not target:
        raise ConfigError(f"Say which skill: {USAGE[args.action]}. `reverie skill list` shows them.")
    if args.action == "show":
        return show_skill(library, target)
    if args.action == "install":
        return install_skill(skills_dir, target, yes=args.yes, force=args.force)
    if args.action == "approve":
        return approve_skill(skills_dir, target, yes=args.yes)
    return remove_skill(library, skills_dir, target, yes=args.yes)


def approve_skill(skills_dir: Path, name: str, *, yes: bool) -> int:
    """Approve the current SKILL.md of a workspace skill, after showing it."""
    try:
        skill = parse_skill(skills_dir / name, "workspace")
    except InvalidSkill as exc:
        raise SkillError(f"Cannot approve {name}: {escape(str(exc))}") from None
    print(escape(read_limited(skill.path).decode("utf-8", errors="replace").rstrip()) + "\n")
    confirm(install_question(skill, skills_dir / name).replace("Install", "Approve", 1), yes)
    library = SkillLibrary(user_dir=skills_dir)
    assert library.approvals is not None
    library.approvals.approve(skill)
    print(f"Approved this version of {name}; if its SKILL.md changes, approve it again.")
    return 0


def list_skills(library: SkillLibrary, skills_dir: Path) -> int:
    skills = library.skills()
    print(f"{len(skills)} skills (bundled with reverie, and yours in {skills_dir}):")
    width = max((len(s.name) for s in skills), default=0)
    for skill in skills:
        print(f"  {skill.name:<{width}}  {escape(status(skill))}")
        print(f"  {'':<{width}}  {escape(one_line(skill.description, 100))}")
    problems = library.problems()
    if problems:
        print("\nProblems (a skill with a broken SKILL.md is skipped):")
        for problem in problems:
            print(f"  {escape(problem)}")
    return 0


def status(skill: Skill) -> str:
    """ "bundled, available" | "workspace, overrides bundled, unavailable: needs the `gh` command" """
    parts = [skill.source] + (["overrides bundled"] if skill.overrides else [])
    parts.append("available" if skill.available else f"unavailable: {'; '.join(skill.missing)}")
    return ", ".join(parts)


def show_skill(library: SkillLibrary, name: str) -> int:
    skill = _known(library, name)
    try:
        text = read_limited(skill.path).decode("utf-8", errors="replace")
    except InvalidSkill as exc:
        raise SkillError(f"{escape(str(exc))}") from None
    print(f"{skill.name} ({escape(status(skill))})")
    print(f"Folder: {escape(str(skill.folder))}")
    print(f"Files: {escape(', '.join(list_files(skill.folder)))}\n")
    print(escape(text.rstrip()))
    return 0


def install_skill(skills_dir: Path, source: str, *, yes: bool, force: bool) -> int:
    with fetch(source) as fetched:
        plan = prepare(fetched)
        target = skills_dir / plan.name
        if (target.exists() or target.is_symlink()) and not force:
            raise SkillError(f"A skill named {plan.name} is already installed in {target}. Pass --force to "
                             f"replace it, or run `reverie skill remove {plan.name}` first.")
        print(f"{escape(plan.text.rstrip())}\n")
        print(f"Files ({len(plan.files)}, {plan.size:,} bytes): {escape(', '.join(rel for rel, _ in plan.files))}")
        confirm(install_question(plan.skill, target), yes)
        install(plan, skills_dir, force=force)
    library = SkillLibrary(user_dir=skills_dir)
    if library.approvals is not None:  # the owner saw it and said yes
        library.approvals.approve(parse_skill(skills_dir / plan.name, "workspace"))
    skill = library.get(plan.name)
    print(f"Installed skill {plan.name} into {target} ({len(plan.files)} files).")
    if skill is not None and skill.overrides:
        print(f"It overrides the bundled skill {plan.name}; remove it to get the bundled one back.")
    if skill is not None and not skill.available:
        print(f"It cannot be used here yet: {'; '.join(skill.missing)}.")
    return 0


def install_question(skill: Skill, target: Path) -> str:
    """The confirmation question, saying what installing changes beyond adding a skill."""
    notes = []
    if skill.always:
        notes.append("it is `always: true`: its instructions are added to every conversation")
    if SkillLibrary(user_dir=None).get(skill.name) is not None:
        notes.append(f"it overrides the bundled skill {skill.name}")
    extra = f" ({'; '.join(notes)})" if notes else ""
    return f"Install skill {skill.name} into {target}{extra}?"


def remove_skill(library: SkillLibrary, skills_dir: Path, name: str, *, yes: bool) -> int:
    folder = skills_dir / name
    # By folder, not by loaded skill: a skill skipped for a broken SKILL.md can be removed too.
    if not NAME.fullmatch(name) or not (folder.is_dir() or folder.is_symlink()):
        if _known(library, name).source == "bundled":
            raise SkillError(f"{name} is bundled with reverie and cannot be removed. To change it, put your "
                             f"own version in {folder}/SKILL.md and approve it with `reverie skill approve {name}`.")
    confirm(f"Remove skill {name} from {folder}?", yes)
    remove(skills_dir, name)
    print(f"Removed skill {name} from {folder}.")
    if library.get(name) is not None:
        print(f"The bundled skill {name} is used again.")
    return 0


def confirm(question: str, yes: bool) -> None:
    """Ask on the terminal unless ``yes``; refuse when nobody can answer (no TTY on stdin)."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise ConfigError(f"{question} Not asked because stdin is not a terminal; pass --yes to go ahead.")
    try:
        answer = input(f"{question} [y/N] ").strip().lower()
    except EOFError:
        answer = ""
    if answer not in ("y", "yes"):
        raise SkillError("Cancelled; nothing was changed.")


def _known(library: SkillLibrary, name: str) -> Skill:
    skill = library.get(name)
    if skill is None:
        names = ", ".join(s.name for s in library.skills()) or "none"
        raise SkillError(f"No skill named {name!r}. Skills: {names}. `reverie skill list` also shows "
                         "skipped ones and why.")
    return skill
