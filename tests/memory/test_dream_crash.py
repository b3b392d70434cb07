"""Dream and crashes: a kill -9 mid-run, and every point between the commit and the cursors."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sys
from datetime import date
from pathlib import Path

from agent.daemon import Runtime
from memory import notes
from memory.cursors import identity, load_state, save_state
from memory.dream import Dream
from tests.fakes.llm import Delay, FakeLLM, Turn
from tests.memory.test_dream import KEY, OWNER, SECTIONS, adding, fake, prompt_of, say, setup

__all__ = ["fake"]  # the fixture, shared with test_dream
ROOT = Path(__file__).resolve().parents[2]


async def test_kill_9_in_the_middle_of_a_run_neither_doubles_nor_skips(tmp_path: Path, fake: FakeLLM) -> None:
    runtime, dream = setup(tmp_path, fake)
    for index in range(5):
        say(runtime, KEY, ("user", OWNER, f"note {index}"), ("assistant", None, f"ok {index}"))
    config = {**SECTIONS, "workspace": str(runtime.workspace), "llm": runtime.config.llm.model_dump(exclude_none=True)}
    (tmp_path / "config.yaml").write_text(json.dumps(config))
    fake.responder = lambda rec: Delay(60, Turn(text="never"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent.cli", "dream", "--config", str(tmp_path / "config.yaml"), cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(30):
            while not fake.requests:
                await asyncio.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert "note 0" in prompt_of(fake.requests[0])
    say(runtime, KEY, ("user", OWNER, "note 5"))  # written after the crash
    fake.responder = adding("Takes notes")
    result = await dream.run()  # the dead process's lock is gone with it
    assert result.outcome == "committed" and result.messages == 11
    joined = prompt_of(fake.requests[-1])
    assert all(joined.count(f"note {i}") == 1 for i in range(6))  # none skipped, none twice
    assert (await dream.run()).outcome == "nothing"
    assert [e.message for e in runtime.memory.log()] == ["dream: 1 sessions, +1 -0", "init"]


def crashed_run(tmp_path: Path, fake: FakeLLM, *, written: bool, committed: bool) -> tuple[Runtime, Dream, str]:
    """The state a crash leaves once a run saved ``pending``: optionally MEMORY.md written, and committed."""
    runtime, dream = setup(tmp_path, fake)
    say(runtime, KEY, ("user", OWNER, "I moved to Lyon."))
    old, head = runtime.memory.snapshot()
    new = notes.add_fact(old, "Lives in Lyon", "About the owner", date(2026, 12, 4), "telegram")
    path = runtime.sessions.path_for(KEY)
    message = "dream: 1 sessions, +1 -0\n\nRun 0123456789ab"
    state_path = runtime.workspace / "state" / "dream.json"
    state = load_state(state_path)
    state.pending = {"base": head, "sha256": hashlib.sha256(new.encode()).hexdigest(), "message": message,
                     "cursors": {identity(path): path.stat().st_size}}
    save_state(state_path, state)
    if committed:
        runtime.memory.replace(new, message)
    elif written:
        runtime.memory.path.write_text(new)
    return runtime, dream, new


async def test_crash_after_the_commit_keeps_the_result_and_moves_the_cursors(tmp_path: Path, fake: FakeLLM) -> None:
    runtime, dream, new = crashed_run(tmp_path, fake, written=True, committed=True)
    result = await dream.run()
    assert result.outcome == "nothing" and fake.requests == []  # the messages are not read twice
    assert runtime.memory.show() == new
    assert load_state(runtime.workspace / "state" / "dream.json").pending is None


async def test_crash_after_writing_the_file_finishes_the_commit(tmp_path: Path, fake: FakeLLM) -> None:
    runtime, dream, new = crashed_run(tmp_path, fake, written=True, committed=False)
    result = await dream.run()
    assert result.outcome == "nothing" and fake.requests == []
    store = runtime.memory
    assert [e.message for e in store.log()] == ["dream: 1 sessions, +1 -0", "init"]  # not a "manual edit"
    assert store.show() == new and store.diff() == ""


async def test_crash_before_writing_reads_the_messages_again(tmp_path: Path, fake: FakeLLM) -> None:
    _, dream, _ = crashed_run(tmp_path, fake, written=False, committed=False)
    fake.responder = adding("Lives in Lyon")
    result = await dream.run()
    assert result.outcome == "committed" and len(fake.requests) == 1
    assert "I moved to Lyon." in prompt_of(fake.requests[0])


async def test_a_remember_after_the_crash_does_not_make_the_result_count_twice(tmp_path: Path,
                                                                               fake: FakeLLM) -> None:
    runtime, dream, _ = crashed_run(tmp_path, fake, written=True, committed=False)
    store = runtime.memory
    await store.remember("Prefers tea", "Preferences", "telegram")  # commits the written file as a manual edit
    result = await dream.run()
    assert result.outcome == "nothing" and fake.requests == []
    text = store.show()
    assert text.count("Lives in Lyon") == 1 and "Prefers tea" in text


async def test_a_damaged_state_file_stops_dream_with_a_clear_message(tmp_path: Path, fake: FakeLLM) -> None:
    runtime, dream = setup(tmp_path, fake)
    say(runtime, KEY, ("user", OWNER, "hello"))
    state = runtime.workspace / "state" / "dream.json"
    state.parent.mkdir(exist_ok=True)
    state.write_text("{not json")
    result = await dream.run()
    assert result.outcome == "failed" and "state file" in result.reason and "move it away" in result.reason
    assert fake.requests == []
    assert os.stat(state).st_size == len("{not json")  # left for the owner to look at


async def test_only_one_run_at_a_time(tmp_path: Path, fake: FakeLLM) -> None:
    runtime, dream = setup(tmp_path, fake)
    say(runtime, KEY, ("user", OWNER, "I moved to Lyon."))
    respond = adding("Lives in Lyon")
    fake.responder = lambda rec: Delay(0.3, respond(rec))
    first, second = await asyncio.gather(dream.run(), dream.run())
    assert {first.outcome, second.outcome} == {"committed", "busy"} and len(fake.requests) == 1

