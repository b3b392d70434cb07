"""The MEMORY.md format: ``## Section`` headings and one fact per bullet, ``- fact (2026-11-22, telegram)``.

    text = add_fact(text, "Prefers tea over coffee", "Preferences", date(2026, 11, 22), "telegram")
    facts(text)          # ["Prefers tea over coffee (2026-11-22, telegram)"]
    notes_block(text, preface, 12_000)   # the system-prompt block, or "" when there are no facts

Pure functions on strings; git and files live in ``memory.store``.
"""

from __future__ import annotations

import re
from datetime import date

_HEADING = re.compile(r"^#{1,2} ")  # "# " and "## " end a section; "### " belongs to it
_PROVENANCE = re.compile(r"\s+\(\d{4}-\d{2}-\d{2}, [^()]*\)$")


def bullet(fact: str, day: date, source: str) -> str:
    return f"- {fact} ({day.isoformat()}, {source})"


def facts(text: str) -> list[str]:
    """Every bullet's text (without the leading ``- ``), in file order."""
    return [line[2:].strip() for line in text.splitlines() if line.startswith("- ") and line[2:].strip()]


def fact_only(item: str) -> str:
    """A bullet's fact without its ``(date, where)`` suffix."""
    return _PROVENANCE.sub("", item).strip()


def has_fact(text: str, fact: str) -> bool:
    return any(fact_only(item) == fact for item in facts(text))


def matching(text: str, words: str) -> list[str]:
    """The bullets whose fact equals ``words``, else those containing it (case-insensitive)."""
    wanted = " ".join(words.casefold().split())
    items = facts(text)
    exact = [item for item in items if " ".join(fact_only(item).casefold().split()) == wanted]
    return exact or [item for item in items if wanted and wanted in " ".join(item.casefold().split())]


def remove_fact(text: str, item: str) -> str:
    """``text`` without the bullet ``- item`` (its first occurrence)."""
    lines = text.splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("- ") and line[2:].strip() == item)
    return "\n".join(lines[:index] + lines[index + 1:]) + "\n"


def add_fact(text: str, fact: str, section: str, day: date, source: str) -> str:
    """``text`` with the bullet appended to ``section`` (matched case-insensitively; created at the end if absent)."""
    lines = text.splitlines()
    start = _find_section(lines, section)
    if start is None:
        body = text.rstrip("\n")
        return f"{body}\n\n## {section}\n\n{bullet(fact, day, source)}\n".lstrip("\n")
    end = next((i for i in range(start + 1, len(lines)) if _HEADING.match(lines[i])), len(lines))
    content = lines[start + 1:end]
    while content and not content[-1].strip():
        content.pop()
    content = (content or [""]) + [bullet(fact, day, source)]
    tail = lines[end:]
    return "\n".join(lines[:start + 1] + content + ([""] if tail else []) + tail) + "\n"


def _find_section(lines: list[str], section: str) -> int | None:
    wanted = section.strip().casefold()
    for i, line in enumerate(lines):
        if line.startswith("## ") and line[3:].strip().casefold() == wanted:
            return i
    return None


def sections(text: str) -> list[tuple[str, list[str]]]:
    """``(title, non-blank lines)`` for each ``## `` section; bullets before the first one form a
    section titled "Notes" (other text there, such as the file's own introduction, is left out)."""
    out: list[tuple[str, list[str]]] = [("Notes", [])]
    for line in text.splitlines():
        if line.startswith("## "):
            out.append((line[3:].strip(), []))
        elif _HEADING.match(line):  # "# ": ends a section; before the first one it is the file's title
            if len(out) > 1:
                out.append(("", []))
        elif line.strip() and (len(out) > 1 or line.startswith("- ")):
            out[-1][1].append(line.rstrip())
    return [(title, body) for title, body in out if title and body]


def notes_block(text: str, preface: str, max_chars: int) -> str:
    """The notes for the system prompt, at most ``max_chars``, cut at a line boundary with a marker."""
    if not facts(text):
        return ""
    lines = [line for title, body in sections(text) for line in (f"### {title}", *body)]
    kept = [preface.strip(), ""]
    size = len(kept[0]) + 1
    for index, line in enumerate(lines):
        if size + len(line) + 1 > max_chars - 120:  # room for the marker
            while kept[-1].startswith("### "):  # no heading without its notes
                lines.insert(index, kept.pop())
            return "\n".join([*kept, _marker(lines[index:])])[:max_chars]
        kept.append(line)
        size += len(line) + 1
    return "\n".join(kept)


def _marker(left_out: list[str]) -> str:
    count = sum(1 for line in left_out if line.startswith("- "))
    chars = sum(len(line) + 1 for line in left_out)
    return f"[... {count} more notes ({chars} characters) left out to fit the prompt ...]"
