"""Hostile SKILL.md files: each one is a listed skill or a reported problem, never an exception, and
never an "unexpected error" (a parser bug the library had to swallow)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skills.loader import SkillLibrary
from skills.skill import MAX_BYTES, InvalidSkill, parse_skill

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEYS = ["name", "description", "always", "requires", "bins", "env", "os", "tools", "metadata", "openclaw",
        "nanobot", "license", "allowed-tools", "version"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
                    st.sampled_from(["", "a\x00b", "ls", "sh", "linux", "win32", "PATH", "\x1b[31m", "\u202e",
                                     '{"reverie": {"requires": {"bins": ["a\\u0000b"]}}}', "x" * 5000]))
values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4),
    max_leaves=20,
)
frontmatters = st.dictionaries(st.sampled_from(KEYS), values, max_size=6)
raw_bits = st.sampled_from(["description: a: b\n", "description: |\n  x\n", "always: true\n", "&a [*a]\n",
                            "requires: &r {bins: *r}\n", "? [a]\n: b\n", "!!python/object:os.system x\n",
                            "description: !!binary aGk=\n", "description: 2026-01-01\n", "{", "\t", "- x\n",
                            "description: [" * 30, "\x00", "\ufeff", "---\n", "description: ok\n"])


def _check(files: dict[str, bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp, "skills")
        for folder, data in files.items():
            (root / folder).mkdir(parents=True)
            (root / folder / "SKILL.md").write_bytes(data)
        library = SkillLibrary(user_dir=root, bundled_dir=None)
        text = library.prompt_text()
        problems = library.problems()
        names = {skill.name for skill in library.skills()}
        assert isinstance(text, str)
        assert not any("unexpected error" in p for p in problems), problems
        for folder in files:
            listed = folder in names or any(f"{folder}/SKILL.md" in p for p in problems)
            assert listed, (folder, problems)
            try:
                parse_skill(root / folder, "workspace")
            except InvalidSkill as exc:
                assert exc.reason.strip()


def _document(front: dict[str, Any], body: str) -> bytes:
    head = yaml.safe_dump(front, allow_unicode=True)
    return f"---\n{head}---\n{body}".encode("utf-8", "surrogatepass")


@FAST
@given(frontmatters, st.text(max_size=50))
def test_random_frontmatter(front: dict[str, Any], body: str) -> None:
    _check({"fuzzed": _document(front, body), "named-too": _document({"description": "x", **front}, body)})


@FAST
@given(st.lists(raw_bits | st.text(max_size=15), max_size=8), st.booleans())
def test_random_frontmatter_text(parts: list[str], closed: bool) -> None:
    text = "---\n" + "".join(parts) + ("\n---\nbody\n" if closed else "")
    _check({"raw": text.encode("utf-8", "surrogatepass")})


@FAST
@given(st.binary(max_size=300), st.sampled_from([b"", b"---\n", b"---\ndescription: x\n---\n", b"\xef\xbb\xbf---\n"]))
def test_random_bytes(data: bytes, prefix: bytes) -> None:
    _check({"bytes": prefix + data})


@settings(max_examples=6, deadline=None)
@given(st.sampled_from([MAX_BYTES - 100, MAX_BYTES + 1, 4 * MAX_BYTES]), st.sampled_from([b"x", b"\xff", b"["]))
def test_huge_files(size: int, fill: bytes) -> None:
    _check({"huge": b"---\ndescription: " + fill * size + b"\n---\n", "long-body": b"---\ndescription: ok\n---\n"
            + fill * size})


def test_nul_in_a_required_command_is_a_missing_requirement() -> None:
    _check({"nul": b'---\ndescription: x\nrequires: {bins: ["a\\0b"]}\n---\n'})
