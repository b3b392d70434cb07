"""Skills benchmark: what 20 skills add to the system prompt, and what keeping it current costs per turn.

    python bench/skills.py          # prints a Markdown table; takes a few seconds

Twenty skill folders are generated in a temporary directory (no bundled skills), each with a
realistic one-sentence description and a body the prompt must not contain.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.context import SystemPrompt  # noqa: E402
from skills import SkillLibrary  # noqa: E402

Row = tuple[str, str, str]
TOPICS = ["invoices", "travel", "recipes", "garden", "backups", "photos", "taxes", "fitness", "reading",
          "music", "car", "home-network", "birthdays", "meetings", "groceries", "language", "budget",
          "podcasts", "email-triage", "news"]


def make_skills(root: Path) -> None:
    for topic in TOPICS:
        folder = root / topic
        folder.mkdir(parents=True)
        description = (f"Handle {topic.replace('-', ' ')}, that is find, organise and report on it from the files in the "
                       f"workspace. Use when the owner mentions {topic.replace('-', ' ')} or asks for a summary of it.")
        body = "\n".join(f"{i}. A step about {topic} that the model reads only through use_skill." for i in range(40))
        (folder / "SKILL.md").write_text(f"---\nname: {topic}\ndescription: {description}\n---\n\n{body}\n")


def median_us(fn: object, n: int) -> float:
    assert callable(fn)
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e6)
    return statistics.median(samples)


def prompt_rows(root: Path) -> list[Row]:
    start = time.perf_counter()
    lib = SkillLibrary(user_dir=root, bundled_dir=None)
    text = lib.prompt_text()
    cold = (time.perf_counter() - start) * 1000
    bundled = SkillLibrary(user_dir=None).prompt_text()
    warm = median_us(lib.prompt_text, 5000)
    loads = lib.loads
    return [("prompt block for 20 skills", f"{len(text.encode()):,} bytes ≈ {len(text) // 4:,} tokens",
             "one line each"),
            ("  per skill", f"{len(text.encode()) // 20} bytes ≈ {len(text) // 80} tokens", ""),
            ("prompt block of the 6 bundled skills", f"{len(bundled.encode()):,} bytes ≈ {len(bundled) // 4:,} tokens",
             ""),
            ("first prompt_text() (scan + parse 20 files)", f"{cold:.2f} ms", ""),
            ("prompt_text() when nothing changed", f"{warm:.1f} µs", "a few stat calls"),
            ("SKILL.md parses after 5,001 calls", f"{loads}", "20")]


def stability_rows(workspace: Path, root: Path) -> list[Row]:
    lib = SkillLibrary(user_dir=root, bundled_dir=None)
    prompt = SystemPrompt(workspace, extra=lib.prompt_text)
    before = {prompt.system() for _ in range(50)}
    path = root / "travel" / "SKILL.md"
    path.write_text(path.read_text().replace("Handle travel", "Plan travel"))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # no same-second blind spot
    after = [prompt.system() for _ in range(50)]
    changed = sum(1 for a, b in zip([next(iter(before)), *after], after, strict=False) if a != b)
    return [("distinct system prompts in 50 calls, skills unchanged", f"{len(before)}", "1"),
            ("changes in the next 50 calls, after one SKILL.md edit", f"{changed}", "1"),
            ("SKILL.md parses for that edit", f"{lib.loads - 20}", "1")]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ws" / "skills"
        make_skills(root)
        rows = prompt_rows(root) + stability_rows(Path(tmp) / "ws", root)
    print("| measure | value | target |\n|---|---|---|")
    for name, value, target in rows:
        print(f"| {name} | {value} | {target} |")


if __name__ == "__main__":
    main()
