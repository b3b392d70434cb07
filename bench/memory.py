"""Memory benchmark: a Dream run over 10,000 new messages, and what 200 facts cost every turn.

    python bench/memory.py          # prints a Markdown table; takes about half a minute

Everything runs against the LLM stand-in on 127.0.0.1. The Dream run's model time (HTTP to the
stand-in and the SDK) is measured around each call and subtracted, so "excluding the model" is
reverie's own work: reading and filtering session files, chunking, validating, git.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.types import Completion, Message, Request, TextSink  # noqa: E402
from channels.access import PairingStore  # noqa: E402
from memory import notes  # noqa: E402
from memory.setup import build_dream  # noqa: E402
from tests.fakes.llm import FakeLLM, Recorded, Turn  # noqa: E402
from tests.fakes.runtime import Chat, runtime_for  # noqa: E402

Row = tuple[str, str, str]
SECTIONS: dict[str, Any] = {"channels": [{"type": "telegram", "token": "123456:bench-token-abcdefghijklmnopqrstuvw"}],
                            "owner": {"telegram": ["7"]}}
WORDS = "the project deadline moved again so we will meet on thursday at the usual cafe near the station".split()


class Timed:
    """Wraps a model and adds up the wall time spent inside it."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.seconds = inner, 0.0

    async def complete(self, request: Request, on_text: TextSink | None = None, *, session: str = "") -> Completion:
        start = time.perf_counter()
        try:
            return await self.inner.complete(request, on_text, session=session)  # type: ignore[no-any-return]
        finally:
            self.seconds += time.perf_counter() - start


def echo_with_fact(rec: Recorded) -> Turn:
    prompt = "".join(b.get("text", "") for b in rec.body["messages"][-1]["content"])
    current = prompt.split("<current_memory>\n", 1)[1].split("\n</current_memory>", 1)[0] + "\n"
    fact = f"Mentioned the project deadline in request {len(current)}"
    text = notes.add_fact(current, fact, "Projects", date(2026, 12, 4), "telegram")
    return Turn(text=f"<memory>\n{text}</memory>\n<removed>\n</removed>")


async def dream_rows(tmp: Path) -> list[Row]:
    async with FakeLLM() as fake:
        runtime = runtime_for(tmp / "dream", fake, **SECTIONS)
        for chat in range(50):
            session = runtime.sessions.get(f"telegram:{chat}")
            for turn in range(100):  # 200 messages per chat: 10,000 in all
                words = " ".join(WORDS[(turn + i) % len(WORDS)] for i in range(12))
                session.append(Message.user_text(f"{turn}: {words}", sender="7"),
                               Message("assistant", [{"type": "text", "text": f"Noted ({turn}): {words}."}]))
        timed = Timed(runtime.default_model)
        dream = build_dream(runtime.config, runtime.memory, runtime.default_model, None,
                            PairingStore(runtime.workspace / "pairing"))
        dream.model = timed
        fake.responder = echo_with_fact
        runtime.memory.ensure()
        start = time.perf_counter()
        result = await dream.run()
        total = time.perf_counter() - start
        again = time.perf_counter()
        nothing = await dream.run()
        idle = (time.perf_counter() - again) * 1000
    assert result.outcome == "committed", result.summary()
    return [("Dream over 10,000 new messages (50 sessions): wall time excluding the model",
             f"{(total - timed.seconds) * 1000:,.0f} ms", "reading, filtering, chunking, validating, git"),
            ("  model calls", f"{result.calls}", f"context {runtime.config.agent.context_tokens:,} tokens"),
            ("  tokens sent (4 characters a token)", f"{result.tokens_sent:,}", f"{result.chars_sent:,} characters"),
            ("  time in the model (stand-in on 127.0.0.1)", f"{timed.seconds * 1000:,.0f} ms", ""),
            ("  commits", f"{len(runtime.memory.log()) - 1}", "1"),
            ("next run with nothing new", f"{idle:.1f} ms, {nothing.calls} model calls", "0 calls, no commit")]


async def prompt_rows(tmp: Path) -> list[Row]:
    async with FakeLLM() as fake:
        runtime = runtime_for(tmp / "prompt", fake)
        text = runtime.memory.show()
        for index in range(200):
            section = ("About the owner", "People", "Projects", "Preferences")[index % 4]
            fact = f"Fact {index}: the owner's {WORDS[index % len(WORDS)]} detail number {index} is worth keeping"
            text = notes.add_fact(text, fact, section, date(2026, 11, 1 + index % 28), "telegram")
        runtime.memory.replace(text, "bench: 200 facts")
        block = runtime.memory.prompt_text(runtime.config.memory.max_prompt_chars)
        samples = []
        for _ in range(5000):
            start = time.perf_counter()
            runtime.memory.prompt_text(runtime.config.memory.max_prompt_chars)
            samples.append((time.perf_counter() - start) * 1e6)
        fake.default = Turn(text="ok")
        async with runtime.running():
            chat = Chat(runtime)
            for turn in range(50):
                await chat.ask(f"turn {turn}")
        systems = [str(r.body.get("system")) for r in fake.requests]
    return [("memory notes in the prompt, 200 facts", f"{len(block.encode()):,} bytes ≈ {len(block) // 4:,} tokens",
             f"capped at memory.max_prompt_chars ({runtime.config.memory.max_prompt_chars:,})"),
            ("  facts shown / in MEMORY.md", f"{block.count(chr(10) + '- ')} / 200", ""),
            ("prompt_text() when MEMORY.md is unchanged", f"{statistics.median(samples):.1f} µs", "one stat call"),
            ("distinct system prompts over 50 turns, memory unchanged", f"{len(set(systems))}", "1"),
            ("  turns sent", f"{len(systems)}", "50")]


async def main() -> None:
    os.environ.setdefault("GIT_CONFIG_NOSYSTEM", "1")
    with tempfile.TemporaryDirectory() as tmp:
        rows = await dream_rows(Path(tmp)) + await prompt_rows(Path(tmp))
    print("| measure | value | target |\n|---|---|---|")
    for name, value, target in rows:
        print(f"| {name} | {value} | {target} |")


if __name__ == "__main__":
    asyncio.run(main())
