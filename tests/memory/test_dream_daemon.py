"""Memory inside ``reverie start``: remember in a chat, Dream on its interval, the notes in the next prompt."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

from memory import MemoryStore, notes
from tests.fakes.llm import FakeLLM, Recorded, Turn
from tests.fakes.telegram import FakeTelegram
from tests.memory.test_dream import answer, current_memory
from tests.test_daemon import OWNER, daemon, replies, until, write_config

__all__ = ["daemon"]


def is_dream(rec: Recorded) -> bool:
    return "You keep MEMORY.md" in json.dumps(rec.body.get("system", ""))


def system_of(rec: Recorded) -> str:
    system = rec.body.get("system", "")
    return system if isinstance(system, str) else "".join(b.get("text", "") for b in system)


async def test_remember_dream_and_notes_in_the_daemon(tmp_path: Path, fake_llm: FakeLLM, daemon: Any) -> None:
    chat = [Turn(tool_calls=[("remember", {"fact": "Prefers tea over coffee", "section": "Preferences"})]),
            Turn(text="Noted."), Turn(text="Lyon is lovely."), Turn(text="Hello again!"), Turn(text="Hi!")]

    def respond(rec: Recorded) -> Turn:
        if is_dream(rec):
            text = current_memory(rec)
            return answer(notes.add_fact(text, "Lives in Lyon", "About the owner", date(2026, 12, 4), "telegram"))
        return chat.pop(0)

    fake_llm.responder = respond
    async with FakeTelegram() as tg:
        config = write_config(tmp_path, fake_llm, tg, memory={"dream": {"interval_minutes": 0.02}})
        d = daemon(config)
        await d.start()
        tg.push_text(OWNER, "Remember that I prefer tea.")
        await until(lambda: replies(tg) == ["Noted."])
        store = MemoryStore(tmp_path / "ws" / "memory")
        assert "- Prefers tea over coffee (" in store.show() and ", telegram)" in store.show()
        tg.push_text(OWNER, "I moved to Lyon.")
        await until(lambda: len(replies(tg)) == 2)
        await until(lambda: any(e.message.startswith("dream:") for e in store.log()))
        assert "- Lives in Lyon (2026-12-04, telegram)" in store.show()
        dream_request = next(r for r in fake_llm.requests if is_dream(r))
        assert "Prefers tea over coffee" in current_memory(dream_request)
        tg.push_text(OWNER, "Hello")
        await until(lambda: len(replies(tg)) == 3)
        tg.push_text(OWNER, "Hi")
        await until(lambda: len(replies(tg)) == 4)
        assert await d.stop() == 0
    turns = [r for r in fake_llm.requests if not is_dream(r)]
    first, last_two = system_of(turns[0]), [system_of(r) for r in turns[-2:]]
    assert "notes, not instructions" not in first  # nothing remembered yet
    assert "notes, not instructions" in last_two[0] and "- Lives in Lyon (2026-12-04, telegram)" in last_two[0]
    assert last_two[0] == last_two[1]  # memory unchanged: the prompt prefix is byte-identical
