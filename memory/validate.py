"""Checking Dream's answer before anything is written.

    text = check(answer, old_text, max_facts=200, today=date.today(), redact=masker)
                                             # or InvalidOutput("why"), and nothing is committed

The answer must hold the whole file in ``<memory>...</memory>`` and may list deliberately removed
bullets in ``<removed>...</removed>``. It is refused when it is not well-formed (a line that is
neither a heading, a bullet, nor text already in the file; model or tool markup), holds more than
``max_facts`` bullets, is empty while the old file was not, or drops a large share of the old facts
without listing them as removed (the "memory looked full, so it was rewritten" failure).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date

from memory import notes

MAX_FACT_CHARS = 500
_MEMORY = re.compile(r"<memory>\n?(.*?)</memory>", re.DOTALL)
_REMOVED = re.compile(r"<removed>(.*?)</removed>", re.DOTALL)
_FENCE = re.compile(r"^```[a-z]*\n(.*?)\n```$", re.DOTALL)
MARKUP = re.compile(r"<\|[^|<>\n]{0,40}\|>|</?s>|\[/?INST\]|</?(tool_use|tool_result|function_calls?|invoke)\b"
                     r"|\"type\":\s*\"tool_(use|result)\"|</?(conversations|current_memory|memory|removed)>",
                     re.IGNORECASE)
_HEADING = re.compile(r"^#{1,6} \S")
_PROVENANCE = re.compile(r"\(\d{4}-\d{2}-\d{2}, [^()]*\)$")


class InvalidOutput(ValueError):
    """Dream's answer was refused; the message says why (for the log)."""


def changes(old: str, new: str) -> tuple[int, int]:
    """How many facts ``new`` adds to ``old``, and how many of ``old``'s it no longer has."""
    old_keys = {_key(notes.fact_only(f)) for f in notes.facts(old)}
    new_keys = {_key(notes.fact_only(f)) for f in notes.facts(new)}
    return len(new_keys - old_keys), len(old_keys - new_keys)


def check(answer: str, old: str, *, max_facts: int, today: date, redact: Callable[[str], str]) -> str:
    """The new MEMORY.md from ``answer``, or InvalidOutput."""
    match = _MEMORY.search(answer)
    if match is None:
        raise InvalidOutput("the answer has no complete <memory>...</memory> block (cut off, or another format)")
    listed = {_key(notes.fact_only(item)) for item in notes.facts(_block(_REMOVED, answer))}
    text = _body(match.group(1))
    lines = [_line(raw, old, today, redact, number) for number, raw in enumerate(text.splitlines(), 1)]
    text = "\n".join(_dedupe(lines)).strip("\n") + "\n"
    new_facts, old_facts = notes.facts(text), notes.facts(old)
    if len(new_facts) > max_facts:
        raise InvalidOutput(f"{len(new_facts)} facts, more than memory.dream.max_facts ({max_facts})")
    if not new_facts and old_facts:
        raise InvalidOutput(f"the answer has no facts left, while MEMORY.md had {len(old_facts)}")
    new_keys = {_key(notes.fact_only(f)) for f in new_facts}
    old_keys = {_key(notes.fact_only(f)): notes.fact_only(f) for f in old_facts}
    dropped = [fact for key, fact in old_keys.items() if key not in new_keys]
    unlisted = [fact for fact in dropped if _key(fact) not in listed]
    if len(unlisted) > max(2, len(old_facts) // 4):
        raise InvalidOutput(f"{len(unlisted)} of {len(old_facts)} facts disappeared without being listed as "
                            f"removed (e.g. {unlisted[0]!r})")
    return text


def _block(pattern: re.Pattern[str], answer: str) -> str:
    match = pattern.search(answer)
    return match.group(1) if match else ""


def _body(text: str) -> str:
    text = text.strip("\n")
    fenced = _FENCE.match(text.strip())
    return fenced.group(1) if fenced else text


def _line(raw: str, old: str, today: date, redact: Callable[[str], str], number: int) -> str:
    line = raw.rstrip()
    if MARKUP.search(line):
        raise InvalidOutput(f"line {number} holds model or tool markup: {line[:80]!r}")
    if line.startswith("* "):
        line = "- " + line[2:]
    if line.startswith("- "):
        fact = line[2:].strip()
        if len(fact) > MAX_FACT_CHARS:
            raise InvalidOutput(f"line {number} is a fact of {len(fact)} characters (at most {MAX_FACT_CHARS})")
        if not _PROVENANCE.search(fact):
            fact = f"{fact} ({today.isoformat()}, conversation)"
        return "- " + redact(fact)
    if not line.strip() or _HEADING.match(line) or line in old.splitlines():
        return line
    raise InvalidOutput(f"line {number} is neither a heading, a '- ' bullet, nor text already in MEMORY.md: "
                        f"{line[:80]!r}")


def _dedupe(lines: list[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for line in lines:
        if line.startswith("- "):
            key = _key(notes.fact_only(line[2:]))
            if key in seen:
                continue
            seen.add(key)
        if line.strip() or (out and out[-1].strip()):  # no runs of blank lines
            out.append(line)
    return out


def _key(fact: str) -> str:
    return " ".join(fact.casefold().split()).rstrip(".")
