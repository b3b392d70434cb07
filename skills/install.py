"""Installing a skill from a folder or a git repository into the workspace, and removing one.

    with fetch("https://github.com/someone/skills.git#pdf") as fetched:
        plan = prepare(fetched)                # SKILL.md parsed, tree checked; nothing written yet
        print(plan.text, plan.files)           # show it to the person, ask, then:
        install(plan, workspace / "skills", force=False)
    remove(workspace / "skills", "pdf")

Nothing from the source is ever executed: the clone runs with hooks disabled, no submodules and no
terminal prompts, and the copy drops exec bits (dirs 0700, files 0600). Running a skill's script is
always a separate, visible step (the model calling the exec tool, which is off by default).
Symlinks are followed only within the skill folder and copied as plain files; ``.git`` is skipped.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from agent.errors import ConfigError, SkillError
from skills.skill import (
    NAME,
    NAME_RULE,
    SKILL_FILE,
    InvalidSkill,
    Skill,
    escape,
    has_control,
    read_limited,
    read_skill_file,
    skill_from,
)

MAX_FILES = 500
MAX_TREE_BYTES = 5_000_000
CLONE_TIMEOUT = 120.0
GIT_PREFIXES = ("https://", "ssh://", "file://", "git@")
SKIP_NAMES = frozenset({".git"})


@dataclass(frozen=True)
class Fetched:
    """A skill folder on disk, the name to use if SKILL.md has none, and how to call it in messages."""

    folder: Path
    name_hint: str
    label: str


@dataclass(frozen=True)
class Plan:
    """A validated skill, ready to copy: ``files`` are (relative path, real source path)."""

    skill: Skill
    text: str  # the SKILL.md as written, to show before asking
    files: tuple[tuple[str, Path], ...]
    size: int

    @property
    def name(self) -> str:
        return self.skill.name


def is_git_url(source: str) -> bool:
    return source.startswith(GIT_PREFIXES) or (source.endswith(".git") and not Path(source).expanduser().is_dir())


@contextmanager
def fetch(source: str) -> Iterator[Fetched]:
    """The local folder holding the skill (a temporary clone for git URLs), removed afterwards."""
    if "://" in source and not source.startswith(GIT_PREFIXES):
        raise ConfigError(f"{source}: use an https://, ssh:// or file:// git URL, git@host:path, or a local folder.")
    if not is_git_url(source):
        folder = Path(source).expanduser().resolve()
        if folder.is_file() and folder.name == SKILL_FILE:
            folder = folder.parent
        if not folder.is_dir():
            raise ConfigError(f"{source}: no such folder. Pass a folder containing {SKILL_FILE}, or a git URL.")
        yield Fetched(folder, folder.name, str(folder))
        return
    url, _, subdir = source.partition("#")
    with tempfile.TemporaryDirectory(prefix="reverie-skill-") as tmp:
        checkout = Path(tmp) / "repo"
        clone(url, checkout)
        folder = (checkout / subdir).resolve() if subdir else checkout
        if not folder.is_relative_to(checkout.resolve()) or not folder.is_dir():
            raise SkillError(f"{source}: the repository has no folder {subdir!r}. Put the skill's folder after '#'.")
        yield Fetched(folder, Path(subdir).name if subdir else _repo_name(url), source)


def clone(url: str, dest: Path, timeout: float = CLONE_TIMEOUT) -> None:
    """A shallow clone with hooks off, no submodules and no prompts; SkillError says what failed."""
    git = shutil.which("git")
    if git is None:
        raise SkillError("git is not installed, so skills cannot be installed from a git URL. Install git, "
                         "or download the skill and pass its folder.")
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_LFS_SKIP_SMUDGE": "1"}
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")  # a host-key question would hang otherwise
    command = [git, "-c", "core.hooksPath=/dev/null", "clone", "--depth", "1", "--no-recurse-submodules",
               "--quiet", "--", url, str(dest)]
    try:
        result = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise SkillError(f"git clone {url} took longer than {timeout:g} s and was stopped. Check the URL "
                         "and the network, or download the skill and pass its folder.") from None
    if result.returncode != 0:
        detail = " ".join(result.stderr.strip().splitlines()[-3:]) or f"exit code {result.returncode}"
        raise SkillError(f"git clone {url} failed: {detail}. Check the URL and that you can reach it.")


def prepare(fetched: Fetched) -> Plan:
    """Validate the fetched skill (the tree first, then SKILL.md); raise SkillError if unusable.

    The tree check comes before any read, so a SKILL.md that links outside the folder (to
    /dev/zero, say) or is a FIFO is refused without being opened. The skill is named by its
    frontmatter ``name:`` when that is valid, else by its folder (or repository); the installed
    folder gets that name, so folder and frontmatter agree afterwards.
    """
    folder, where = fetched.folder, f"{fetched.label}: {SKILL_FILE}"
    if not (folder / SKILL_FILE).exists():
        raise SkillError(_no_skill_file(folder, fetched.label))
    files, size = _tree(folder, fetched.label)
    real = dict(files).get(SKILL_FILE, folder / SKILL_FILE)
    try:
        data, body = read_skill_file(real)
        declared = data.get("name")
        valid = isinstance(declared, str) and NAME.fullmatch(declared.strip())
        name = declared.strip() if valid and isinstance(declared, str) else fetched.name_hint
        if not NAME.fullmatch(name):
            raise SkillError(f"{where} needs a `name:` of {NAME_RULE} (the folder name {name!r} is not one). "
                             "Nothing was installed.")
        skill = skill_from(data, body, folder, "workspace", name)
        text = read_limited(real).decode("utf-8").removeprefix("\ufeff")
    except InvalidSkill as exc:
        raise SkillError(f"{where}: {exc.reason}. Nothing was installed.") from None
    return Plan(skill, text, files, size)


def install(plan: Plan, skills_dir: Path, *, force: bool) -> Path:
    """Copy the plan into ``skills_dir/<name>`` through a temporary folder and a rename."""
    target = skills_dir / plan.name
    exists = target.exists() or target.is_symlink()
    if exists and not force:
        raise SkillError(f"A skill named {plan.name} is already installed in {target}. Pass --force to "
                         f"replace it, or run `reverie skill remove {plan.name}` first.")
    try:
        return _install(plan, skills_dir, target, exists)
    except OSError as exc:
        where = exc.filename or skills_dir
        raise SkillError(f"Could not install skill {plan.name} into {target}: {where}: "
                         f"{exc.strerror or exc}. Nothing was installed.") from None


def _install(plan: Plan, skills_dir: Path, target: Path, exists: bool) -> Path:
    skills_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".install-", dir=skills_dir))  # '.' names are never loaded
    try:
        for relative, source in plan.files:
            _copy_file(source, staging / relative)
        old = _set_aside(target) if exists else None
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if old is not None:
        _delete(old)
    return target


def remove(skills_dir: Path, name: str) -> Path:
    """Delete the workspace skill ``name`` (set aside by a rename first, so no half skill stays loadable)."""
    target = skills_dir / name
    if not NAME.fullmatch(name) or not (target.is_dir() or target.is_symlink()):
        raise SkillError(f"No workspace skill named {name!r} in {skills_dir}.")
    _delete(_set_aside(target))
    return target


def _no_skill_file(folder: Path, label: str) -> str:
    found = sorted(p.parent.relative_to(folder).as_posix() for p in folder.rglob(SKILL_FILE)
                   if ".git" not in p.relative_to(folder).parts)
    if not found:
        return f"{label} has no {SKILL_FILE}, so it is not a skill. Nothing was installed."
    shown = ", ".join(found[:10]) + (f" and {len(found) - 10} more" if len(found) > 10 else "")
    return (f"{label} has no {SKILL_FILE} at its top; it holds these skills: {shown}. Pass one of those "
            "folders (for a git URL, add #FOLDER to the URL).")


def _tree(folder: Path, label: str) -> tuple[tuple[tuple[str, Path], ...], int]:
    root = folder.resolve()
    files: list[tuple[str, Path]] = []
    size = 0
    for here, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_NAMES)
        for name in dirs:
            if (Path(here) / name).is_symlink():
                rel = (Path(here) / name).relative_to(root).as_posix()
                raise SkillError(f"{rel} is a link to a folder; replace it with the folder itself. Nothing "
                                 "was installed.")
        for name in sorted(n for n in names if n not in SKIP_NAMES):
            path = Path(here) / name
            rel, real = path.relative_to(root).as_posix(), path.resolve()
            if has_control(rel):
                raise SkillError(f"{escape(rel)} has a control character in its name; rename it. Nothing "
                                 "was installed.")
            if not real.is_relative_to(root):
                raise SkillError(f"{rel} is a link to {real}, outside the skill's folder; a skill may only "
                                 "contain its own files. Nothing was installed.")
            if not real.is_file():
                raise SkillError(f"{rel} is not a regular file (a broken link or a device). Nothing was installed.")
            size += real.stat().st_size
            files.append((rel, real))
            if len(files) > MAX_FILES or size > MAX_TREE_BYTES:
                raise SkillError(f"{label} is too big for a skill: the limit is {MAX_FILES} files and "
                                 f"{MAX_TREE_BYTES // 1_000_000} MB. Nothing was installed.")
    return tuple(files), size


def _copy_file(source: Path, dest: Path) -> None:
    dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # 0600 on purpose: an installed skill is read, never executed by the installer.
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "wb") as out, source.open("rb") as src:
        shutil.copyfileobj(src, out)


def _set_aside(target: Path) -> Path:
    aside = target.with_name(f".removed-{target.name}-{secrets.token_hex(4)}")
    target.rename(aside)
    return aside


def _delete(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        path.unlink()
    else:
        shutil.rmtree(path)


def _repo_name(url: str) -> str:
    """``https://host/owner/pdf-skill.git`` -> ``pdf-skill``; ``git@host:owner/x`` -> ``x``."""
    tail = url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return tail.removesuffix(".git").lower()
