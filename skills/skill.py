"""One skill: a folder holding ``SKILL.md`` (YAML frontmatter, then Markdown), and its parser.

    skill = parse_skill(Path("skills/github"), "bundled")
    skill.name, skill.description, skill.missing   # "github", "Work with GitHub ...", ("needs the `gh` command",)
    skill.body                                     # the Markdown after the frontmatter

The format is the common SKILL.md convention, so skills written for other agents load::

    ---
    name: github
    description: What it does and when to use it.
    always: false                      # true: the whole body goes into the system prompt
    requires: {bins: [gh], env: [GITHUB_TOKEN]}
    ---
    Instructions in Markdown ...

Requirements and ``always`` are also read from the nested form other agents use,
``metadata: {<agent>: {requires: {bins, env}, always, os}}``, also when ``metadata`` is a JSON string.
Other keys (``license``, ``allowed-tools``, ``version``, ...) are accepted and ignored.

The folder name is the skill's identity: it is unique on disk by construction, it is what
``reverie skill remove NAME`` deletes, and a workspace folder overrides the bundled folder of the same
name. A ``name:`` in the frontmatter that differs is accepted and ignored (``reverie skill install``
uses it to name the folder it creates, so installed skills agree with themselves).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import sys
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

Source = Literal["bundled", "workspace"]
SKILL_FILE = "SKILL.md"
MAX_BYTES = 256 * 1024
NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
# A top-level plain scalar (not quoted, not a flow or block value) that contains ': '.
_UNQUOTED = re.compile(r"^([A-Za-z_][\w-]*):[ \t]+([^\s'\"\[{|>&*!%@`#][^\n]*?: [^\n]*)$", re.M)
# Bidirectional overrides and isolates: they reorder what a terminal shows.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
NAME_RULE = "1-64 lowercase letters, digits and hyphens, not starting with a hyphen"


class InvalidSkill(Exception):
    """A SKILL.md that cannot be used; ``str()`` is "path: reason"."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


@dataclass(frozen=True)
class Requirements:
    """What a skill needs from this machine: commands on PATH, environment variables, an OS."""

    bins: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    os: tuple[str, ...] = ()  # sys.platform prefixes: "linux", "darwin", "win32"
    tools: tuple[str, ...] = ()  # agent tools it relies on (e.g. exec, web_fetch, cron)

    def missing(self, tools: frozenset[str] | None = None) -> tuple[str, ...]:
        """The unmet requirements as plain reasons; empty when the skill can be used here.

        ``tools`` is the set of tool names the agent has (None: not checked)."""
        reasons = [f"needs the `{name}` command" for name in self.bins if shutil.which(name) is None]
        if tools is not None:
            reasons += [f"needs the {name} tool (not enabled)" for name in self.tools if name not in tools]
        reasons += [f"needs the environment variable {name}" for name in self.env if not os.environ.get(name)]
        if self.os and not any(sys.platform.startswith(name) for name in self.os):
            reasons.append(f"runs only on {', '.join(self.os)}")
        return tuple(reasons)


@dataclass(frozen=True)
class Skill:
    name: str
    description: str
    folder: Path
    source: Source
    always: bool = False
    missing: tuple[str, ...] = ()  # unmet requirements, e.g. "needs the `gh` command"
    requires: Requirements = Requirements()
    overrides: bool = False  # a workspace skill that hides the bundled skill of the same name
    body: str = field(default="", repr=False)  # SKILL.md without its frontmatter

    @property
    def available(self) -> bool:
        return not self.missing

    @property
    def path(self) -> Path:
        return self.folder / SKILL_FILE


def _unsafe(char: str) -> bool:
    return char in _BIDI or unicodedata.category(char) == "Cc"


def escape(text: str) -> str:
    """``text`` safe to print on a terminal: control characters (ANSI escapes, ...) become ``\\x1b`` and
    the like; newlines and tabs stay."""
    if not any(_unsafe(c) for c in text):
        return text
    return "".join(c if c in "\n\t" or not _unsafe(c) else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def has_control(name: str) -> bool:
    """Whether a file name holds a control character (newlines and tabs included)."""
    return any(_unsafe(c) for c in name)


def parse_skill(folder: Path, source: Source, name: str | None = None) -> Skill:
    """The skill in ``folder`` (named after it unless ``name`` is given); raises InvalidSkill."""
    path = folder / SKILL_FILE
    data, body = read_skill_file(path)
    return skill_from(data, body, folder, source, name or folder.name)


def read_skill_file(path: Path) -> tuple[dict[str, Any], str]:
    """The frontmatter mapping and the body of one SKILL.md; raises InvalidSkill."""
    raw = read_limited(path)
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise InvalidSkill(path, f"not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8") from None
    head, body = _split(path, text)
    return _load_yaml(path, head), body.strip()


def read_limited(path: Path) -> bytes:
    """The bytes of a regular file of at most MAX_BYTES, never following a link or blocking on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise InvalidSkill(path, f"missing; a skill folder needs a {SKILL_FILE}") from None
    except OSError as exc:
        if path.is_symlink():
            raise InvalidSkill(path, "is a symbolic link; replace it with the file itself") from None
        raise InvalidSkill(path, f"cannot be read ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InvalidSkill(path, "not a regular file (a FIFO, device or folder); make it a plain text file")
        raw = b"" if info.st_size > MAX_BYTES else _read_up_to(fd, MAX_BYTES + 1)
    except OSError as exc:
        raise InvalidSkill(path, f"cannot be read ({exc.strerror})") from None
    finally:
        os.close(fd)
    if info.st_size > MAX_BYTES or len(raw) > MAX_BYTES:
        size = max(info.st_size, len(raw))
        raise InvalidSkill(path, f"too large: it is {size // 1024} KB and the limit is {MAX_BYTES // 1024} KB; "
                                 "move long material into files beside it")
    return raw


def _read_up_to(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        chunk = os.read(fd, min(left, 65536))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def skill_from(data: dict[str, Any], body: str, folder: Path, source: Source, name: str) -> Skill:
    """Build a Skill from parsed frontmatter; raises InvalidSkill naming what to fix."""
    path = folder / SKILL_FILE
    if not NAME.fullmatch(name):
        raise InvalidSkill(path, f"{name!r} is not a valid skill name ({NAME_RULE}); rename the folder")
    description = data.get("description")
    if description is not None and not isinstance(description, str | dict | list | bool):
        description = str(description)  # a date or a number written unquoted
    if not isinstance(description, str) or not description.strip():
        raise InvalidSkill(path, "no description; add `description:` saying what the skill does and when to use it")
    blocks = _blocks(data)
    requires = _requirements(blocks)
    always = any(block.get("always") is True for block in blocks)
    return Skill(name, description.strip(), folder, source, always, requires.missing(), requires, body=body)


def _split(path: Path, text: str) -> tuple[str, str]:
    lines = text.split("\n")
    if lines[0].strip() != "---":
        raise InvalidSkill(path, "no frontmatter; the file must start with a '---' line, then `name:` and "
                                 "`description:`, then another '---' line")
    for index, line in enumerate(lines[1:], 1):
        if line.rstrip() == "---":
            return "\n".join(lines[1:index]), "\n".join(lines[index + 1:])
    raise InvalidSkill(path, "the frontmatter has no closing '---' line")


def _load_yaml(path: Path, head: str) -> dict[str, Any]:
    try:
        data = _safe_load(head)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 2}: " if mark else ""  # +1 for 1-based, +1 for the opening '---'
        hint = "; put the value in quotes if it contains ': '" if "mapping values" in str(exc.problem) else ""
        raise InvalidSkill(path, f"{where}the frontmatter is not valid YAML ({exc.problem}){hint}") from None
    except yaml.YAMLError as exc:
        raise InvalidSkill(path, f"the frontmatter is not valid YAML ({exc})") from None
    except RecursionError:
        raise InvalidSkill(path, "the frontmatter is nested too deeply to read") from None
    if not isinstance(data, dict):
        raise InvalidSkill(path, "the frontmatter must be `key: value` lines with at least `description:`")
    return data


def _safe_load(head: str) -> Any:
    """YAML, but a top-level ``key: plain value`` line whose value holds ': ' is read as a string.

    Line-based frontmatter parsers (nanobot's among them) accept ``description: Use when: ...``;
    YAML does not. Such lines are quoted and the text parsed again; anything else that fails is
    reported with the first error.
    """
    try:
        return yaml.safe_load(head)
    except yaml.MarkedYAMLError:
        quoted = _UNQUOTED.sub(lambda m: f"{m[1]}: {json.dumps(m[2].strip())}", head)
        if quoted == head:
            raise
        try:
            return yaml.safe_load(quoted)
        except yaml.YAMLError:
            pass
        raise


def _blocks(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The top level plus each ``metadata.<agent>`` mapping: where requirements may be written.

    ``metadata`` itself is a free map in the convention, so its own keys are never read.
    """
    meta = data.get("metadata")
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except ValueError:
            meta = None  # the convention allows plain string metadata; it is not ours to read
    if not isinstance(meta, dict):
        return [data]
    return [data, *(value for value in meta.values() if isinstance(value, dict))]


def _requirements(blocks: list[dict[str, Any]]) -> Requirements:
    """Requirements from every block; values of the wrong shape are ignored, never fatal."""
    bins: list[str] = []
    env: list[str] = []
    systems: list[str] = []
    tools: list[str] = []
    for block in blocks:
        requires = block.get("requires")
        requires = requires if isinstance(requires, dict) else {}
        bins += _names(requires, "bins")
        env += _names(requires, "env")
        systems += _names(block, "os") + _names(requires, "os")
        tools += _names(requires, "tools")
    return Requirements(*(tuple(dict.fromkeys(names)) for names in (bins, env, systems, tools)))


def _names(mapping: dict[str, Any], key: str) -> list[str]:
    """The names under ``key`` (a string or a list of strings); anything else counts as none."""
    value = mapping.get(key)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return []
    return [item.strip() for item in value if isinstance(item, str) and item.strip()]
