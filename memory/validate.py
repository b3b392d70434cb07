"""Checking Dream's answer before anything is written.

    text = check(answer, old_text, max_facts=200, today=date.today(), redact=masker)
                                             # or InvalidOutput("why"), and nothing is committed

The answer must hold the whole file in ``<memory>...</memory>`` and may list deliberately removed
bullets in ``<removed>...</removed>``. It is refused when it is not well-formed (a line that is
neither a heading, a bullet, nor text already in the file; model or tool markup), holds more than
``max_facts`` bullets or is far longer than they need, is empty while the old file was not, drops
a large share of the old facts without listing them as removed (the "memory looked full, so it was
rewritten" failure), removes more than half of them even when listed, or loses a hand-written line.
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


def check(answer: str, old: str, *, max_facts: int, today: date, redact: Callable[[str], str],
          listed: set[str] | None = None) -> str:
    """The new MEMORY.md from ``answer``, or InvalidOutput.

    ``listed`` collects the facts the answer says it removed, for ``check_drops`` over a whole run.
    """
    match = _MEMORY.search(answer)
    if match is None:
        raise InvalidOutput("the answer has no complete <memory>...</memory> block (cut off, or another format)")
    removed = {_key(notes.fact_only(item)) for item in notes.facts(_block(_REMOVED, answer))}
    old_lines = set(old.splitlines())
    body = _body(match.group(1)).splitlines()
    lines = [_line(raw, old_lines, today, redact, number) for number, raw in enumerate(body, 1)]
    text = "\n".join(_dedupe(lines)).strip("\n") + "\n"
    if len(text) > max_facts * (MAX_FACT_CHARS + 60) + 5_000:
        raise InvalidOutput(f"the answer is {len(text):,} characters, far more than {max_facts} facts need")
    if listed is not None:
        listed.update(removed)
    check_drops(old, text, removed if listed is None else listed, max_facts)
    return text


def check_drops(old: str, new: str, listed: set[str], max_facts: int) -> None:
    """InvalidOutput when ``new`` has too many facts, or lost too much of ``old``.

    Facts may disappear unlisted only a few at a time (a quarter, at least 2), listed ones up to half
    (at least 3) per run, and a hand-written line that is neither a heading nor a bullet only if listed.
    """
    new_facts, old_facts = notes.facts(new), notes.facts(old)
    if len(new_facts) > max_facts:
        raise InvalidOutput(f"{len(new_facts)} facts, more than memory.dream.max_facts ({max_facts})")
    if not new_facts and old_facts:
        raise InvalidOutput(f"the answer has no facts left, while MEMORY.md had {len(old_facts)}")
    new_keys = {_key(notes.fact_only(f)) for f in new_facts}
    dropped = [notes.fact_only(f) for f in old_facts if _key(notes.fact_only(f)) not in new_keys]
    unlisted = [fact for fact in dropped if _key(fact) not in listed]
    if len(unlisted) > max(2, len(old_facts) // 4):
        raise InvalidOutput(f"{len(unlisted)} of {len(old_facts)} facts disappeared without being listed as "
                            f"removed (e.g. {unlisted[0]!r})")
    if len(dropped) > max(3, len(old_facts) // 2):
        raise InvalidOutput(f"the answer removes {len(dropped)} of {len(old_facts)} facts at once; a change that "
                            "large is left to the owner (reverie memory edit)")
    kept = set(new.splitlines())
    prose = [line for line in old.splitlines() if line.strip() and not line.startswith("- ")
             and not _HEADING.match(line) and line not in kept and _key(line) not in listed]
    if prose:
        raise InvalidOutput(f"a hand-written line disappeared: {prose[0][:80]!r}")


def _block(pattern: re.Pattern[str], answer: str) -> str:
    match = pattern.search(answer)
    return match.group(1) if match else ""


def _body(text: str) -> str:
    text = text.strip("\n")
    fenced = _FENCE.match(text.strip())
    return fenced.group(1) if fenced else text


def _line(raw: str, old: set[str], today: date, redact: Callable[[str], str], number: int) -> str:
    line = raw.rstrip()
    if line in old:  # kept as it was (the owner may have written anything by hand)
        return line
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
    if _HEADING.match(line) and len(line) > 120:
        raise InvalidOutput(f"line {number} is a heading of {len(line)} characters")
    if not line.strip() or _HEADING.match(line):
        return redact(line)
    raise InvalidOutput(f"line {number} is neither a heading, a '- ' bullet, nor text already in MEMORY.md: "
                        f"{line[:80]!r}")


def _dedupe(lines: list[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for line in lines:
        if line.strip() and not _HEADING.match(line):  # a fact or a line of prose, once
            key = _key(notes.fact_only(line[2:]) if line.startswith("- ") else line)
            if key in seen:
                continue
            seen.add(key)
        if line.strip() or (out and out[-1].strip()):  # no runs of blank lines
            out.append(line)
    return out


def _key(fact: str) -> str:
    return " ".join(fact.casefold().split()).rstrip(".")
