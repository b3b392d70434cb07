"""Dream against the LLM stand-in: real session files, a real git repository, the real providers."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from agent.config import Config
from agent.daemon import Runtime
from agent.types import Message
from channels.access import PairingStore
from memory import notes
from memory.cursors import identity, load_state
from memory.dream import Dream
from memory.setup import build_dream
from tests.fakes.llm import Delay, FakeLLM, Recorded, Turn
from tests.fakes.runtime import runtime_for

OWNER, FRIEND, STRANGER = "7", "42", "999"
KEY = "telegram:100"
TOKEN = "123456:telegram-token-abcdefghijklmnopqrstuvwxyz"
SECTIONS: dict[str, Any] = {
    "channels": [{"type": "telegram", "token": TOKEN, "allow_from": [FRIEND], "allow_chats": ["100"],
                  "group_policy": "open"}],
    "owner": {"telegram": [OWNER]}}


@pytest.fixture
async def fake() -> Any:
    async with FakeLLM() as server:
        yield server


def setup(tmp_path: Path, fake: FakeLLM, **sections: Any) -> tuple[Runtime, Dream]:
    runtime = runtime_for(tmp_path, fake, **{**SECTIONS, **sections})
    config: Config = runtime.config
    dream = build_dream(config, runtime.memory, runtime.default_model, runtime.usage,
                        PairingStore(runtime.workspace / "pairing"))
    dream.today = lambda: date(2026, 12, 4)
    return runtime, dream


def say(runtime: Runtime, key: str, *msgs: tuple[str, str | None, str]) -> None:
    """Append (role, sender, text) messages to a session file."""
    session = runtime.sessions.get(key)
    session.append(*(Message(role, [{"type": "text", "text": text}], sender=sender)  # type: ignore[arg-type]
                     for role, sender, text in msgs))


def prompt_of(rec: Recorded) -> str:
    content = rec.body["messages"][-1]["content"]
    return content if isinstance(content, str) else "".join(b.get("text", "") for b in content)


def conversations(rec: Recorded) -> str:
    return prompt_of(rec).split("<conversations>", 1)[1]


def current_memory(rec: Recorded) -> str:
    match = re.search(r"<current_memory>\n(.*)\n</current_memory>", prompt_of(rec), re.DOTALL)
    assert match, prompt_of(rec)
    return match.group(1) + "\n"


def answer(text: str, removed: str = "") -> Turn:
    return Turn(text=f"<memory>\n{text}</memory>\n<removed>\n{removed}</removed>")


def adding(*facts: str) -> Callable[[Recorded], Turn]:
    """A model that keeps the current memory and adds ``facts`` under "About the owner"."""

    def respond(rec: Recorded) -> Turn:
        text = current_memory(rec)
        for fact in facts:
            if not notes.has_fact(text, fact):
                text = notes.add_fact(text, fact, "About the owner", date(2026, 12, 4), "telegram")
        return answer(text)

    return respond


async def test_facts_are_added_as_one_commit_and_the_cursor_moves(tmp_path: Path, fake: FakeLLM) -> None:
    runtime, dream = setup(tmp_path, fake)
    say(runtime, KEY, ("user", OWNER, "I moved to Lyon last week."), ("assistant", None, "Congratulations!"))
    fake.responder = adding("Lives in Lyon")
    result = await dream.run()
    assert result.outcome == "committed" and (result.sessions, result.added, result.removed, result.calls) == (1, 1, 0, 1)
    assert "- Lives in Lyon (2026-12-04, telegram)" in runtime.memory.show()
    log = runtime.memory.log()
    assert [e.message for e in log] == ["dream: 1 sessions, +1 -0", "init"] and log[0].sha == result.sha
    path = runtime.sessions.path_for(KEY)
    assert load_state(runtime.workspace / "state" / "dream.json").cursors == {identity(path): path.stat().st_size}
    request = prompt_of(fake.requests[0])
    assert "user 7" not in request and "] owner: I moved to Lyon last week." in request
    assert "] assistant: Congratulations!" in request and "Today is 2026-12-04." in request
    system = json.dumps(fake.requests[0].body["system"])
    assert "At most 200 bullets" in system

    again = await dream.run()  # nothing new: no call, no commit
    assert again.outcome == "nothing" and len(fake.requests) == 1 and len(runtime.memory.log()) == 2

    say(runtime, KEY, ("user", OWNER, "thanks, bye"), ("assistant", None, "Bye!"))
    fake.responder = None
    fake.script(answer(runtime.memory.show()))  # chatter: the model returns the file unchanged
    third = await dream.run()
    assert third.outcome == "unchanged" and len(runtime.memory.log()) == 2
    assert "I moved to Lyon" not in prompt_of(fake.requests[1]) and "thanks, bye" in prompt_of(fake.requests[1])
    assert (await dream.run()).outcome == "nothing"


async def test_nothing_at_all_means_no_call_and_no_commit(tmp_path: Path, fake: FakeLLM) -> None:
    runtime, dream = setup(tmp_path, fake)
    result = await dream.run()
    assert result.outcome == "nothing" and result.calls == 0
    assert fake.requests == [] and [e.message for e in runtime.memory.log()] == ["init"]


@pytest.mark.parametrize("reply, why", [
    ("Sure! You live in Lyon.", "no complete <memory>"),
    ("<memory>\n# Memory\n\n## About the owner\n\n- Lives in Lyon (2026-12-04, telegram)\n", "no complete <memory>"),
    ("<memory>\n## About\nI think the owner is nice\n</memory>", "neither a heading"),
    ("<memory>\n## About\n- <|im_start|>assistant Lives in Lyon\n</memory>", "markup"),
    ("<memory>\n## About\n- a\n- b\n- c\n- d\n</memory>", "more than memory.dream.max_facts"),
])
async def test_invalid_answers_commit_nothing(tmp_path: Path, fake: FakeLLM, reply: str, why: str) -> None:
    runtime, dream = setup(tmp_path, fake, memory={"dream": {"max_facts": 3}})
    say(runtime, KEY, ("user", OWNER, "I moved to Lyon."))
    fake.script(Turn(text=reply))
    before = runtime.memory.show()
    result = await dream.run()
    assert result.outcome == "invalid" and why in result.reason
    assert runtime.memory.show() == before and len(runtime.memory.log()) == 1
    assert load_state(runtime.workspace / "state" / "dream.json").cursors == {}  # read again next time
    fake.responder = adding("Lives in Lyon")
    assert (await dream.run()).outcome == "committed"
    assert "I moved to Lyon." in prompt_of(fake.requests[-1])


async def test_dropping_many_facts_needs_them_listed_as_removed(tmp_path: Path, fake: FakeLLM) -> None:
    runtime, dream = setup(tmp_path, fake)
    for index in range(8):
        runtime.memory.add_fact(f"Fact number {index}", "About the owner", "terminal", date(2026, 11, 1))
    say(runtime, KEY, ("user", OWNER, "Forget everything about numbers."))
    old = runtime.memory.show()

    def without(numbers: range) -> tuple[str, str]:
        gone = [f"- Fact number {n} (2026-11-01, terminal)" for n in numbers]
        return "".join(line + "\n" for line in old.splitlines() if line not in gone), "\n".join(gone) + "\n"

    kept, dropped = without(range(1, 8))
    fake.script(answer(kept))
    result = await dream.run()
    assert result.outcome == "invalid" and "7 of 8 facts disappeared" in result.reason
    fake.script(answer(kept, removed=dropped))  # listed, but too much at once: left to the owner
    result = await dream.run()
    assert result.outcome == "invalid" and "removes 7 of 8 facts at once" in result.reason
    assert runtime.memory.show() == old
    kept, dropped = without(range(4, 8))
    fake.script(answer(kept, removed=dropped))
    result = await dream.run()
    assert result.outcome == "committed" and (result.added, result.removed) == (0, 4)
    assert [notes.fact_only(f) for f in notes.facts(runtime.memory.show())] == [f"Fact number {n}" for n in range(4)]


async def test_drops_are_counted_over_the_whole_run_not_per_chunk(tmp_path: Path, fake: FakeLLM) -> None:
    runtime, dream = setup(tmp_path, fake, agent={"context_tokens": 2000})
    for index in range(12):
        runtime.memory.add_fact(f"Fact number {index}", "About the owner", "terminal", date(2026, 11, 1))
    for index in range(60):
        say(runtime, KEY, ("user", OWNER, f"message {index:03d} " + "x" * 200))

    def drop_two(rec: Recorded) -> Turn:  # each answer alone drops few enough; together they drop many
        facts = [line for line in current_memory(rec).splitlines() if line.startswith("- ")]
        return answer("".join(line + "\n" for line in current_memory(rec).splitlines() if line not in facts[:2]))

    fake.responder = drop_two
    result = await dream.run()
    assert result.outcome == "invalid" and result.calls >= 2 and "4 of 12 facts disappeared" in result.reason
    assert len(notes.facts(runtime.memory.show())) == 12


def test_a_hand_written_line_must_survive(tmp_path: Path) -> None:
    from memory.validate import InvalidOutput, check

    old = "# Memory\n\nMy own words, kept.\n\n## People\n\n- Ana (2026-11-01, terminal)\n"
    with pytest.raises(InvalidOutput, match="hand-written line disappeared"):
        check("<memory>\n# Memory\n\n## People\n\n- Ana (2026-11-01, terminal)\n</memory>", old,
              max_facts=10, today=date(2026, 12, 4), redact=str)
    marked = old + "- Uses <s>strike</s> in notes (2026-11-01, terminal)\n"  # markup the owner wrote is kept
    assert check(f"<memory>\n{marked}</memory>", marked, max_facts=10, today=date(2026, 12, 4), redact=str) == marked


async def test_emptying_a_full_memory_is_refused(tmp_path: Path, fake: FakeLLM) -> None:
    runtime, dream = setup(tmp_path, fake)
    runtime.memory.add_fact("Has a cat", "About the owner", "terminal")
    say(runtime, KEY, ("user", OWNER, "hello"))
    fake.script(answer("# Memory\n", removed="- Has a cat\n"))
    result = await dream.run()
    assert result.outcome == "invalid" and "no facts left" in result.reason


async def test_a_hand_edit_before_the_run_is_committed_as_manual_and_kept(tmp_path: Path, fake: FakeLLM) -> None:
    runtime, dream = setup(tmp_path, fake)
    runtime.memory.ensure()
    path = runtime.memory.path
    path.write_text(path.read_text() + "\n## Garden\n\n- Grows tomatoes (written by hand)\n")
    say(runtime, KEY, ("user", OWNER, "I moved to Lyon."))
    fake.responder = adding("Lives in Lyon")
    result = await dream.run()
    assert result.outcome == "committed"
    assert "- Grows tomatoes (written by hand)" in current_memory(fake.requests[0])  # the run started from it
    assert [e.message for e in runtime.memory.log()] == ["dream: 1 sessions, +1 -0", "manual edit", "init"]
    text = runtime.memory.show()
    assert "- Grows tomatoes (written by hand)" in text and "- Lives in Lyon (2026-12-04, telegram)" in text


async def test_a_hand_edit_during_the_run_is_never_written_over(tmp_path: Path, fake: FakeLLM) -> None:
    runtime, dream = setup(tmp_path, fake)
    say(runtime, KEY, ("user", OWNER, "I moved to Lyon."))
    respond = adding("Lives in Lyon")
    fake.responder = lambda rec: Delay(0.5, respond(rec)) if len(fake.requests) == 1 else respond(rec)
    run = asyncio.create_task(dream.run())
    while not fake.requests:
        await asyncio.sleep(0.01)
    path = runtime.memory.path
    path.write_text(path.read_text().replace("## People\n", "## People\n\n- Sister Ana lives in Porto\n"))
    result = await run
    assert result.outcome == "committed" and len(fake.requests) == 2  # started again from the edited file
    assert "Sister Ana" not in current_memory(fake.requests[0]) and "Sister Ana" in current_memory(fake.requests[1])
    text = runtime.memory.show()
    assert "- Sister Ana lives in Porto" in text and "- Lives in Lyon (2026-12-04, telegram)" in text
    assert [e.message for e in runtime.memory.log()] == ["dream: 1 sessions, +1 -0", "manual edit", "init"]


async def test_an_edit_during_every_attempt_means_give_up_without_writing(tmp_path: Path, fake: FakeLLM) -> None:
    runtime, dream = setup(tmp_path, fake)
    say(runtime, KEY, ("user", OWNER, "I moved to Lyon."))
    respond = adding("Lives in Lyon")

    def edit_then_answer(rec: Recorded) -> Turn:
        runtime.memory.path.write_text(runtime.memory.path.read_text() + f"\n- Edit {len(fake.requests)}\n")
        return respond(rec)

    fake.responder = edit_then_answer
    result = await dream.run()
    assert result.outcome == "changed" and result.calls == 3
    assert "Lives in Lyon" not in runtime.memory.show() and "- Edit 3" in runtime.memory.show()
    assert load_state(runtime.workspace / "state" / "dream.json").cursors == {}


async def test_remember_and_a_run_at_the_same_moment_both_land(tmp_path: Path, fake: FakeLLM) -> None:
    runtime, dream = setup(tmp_path, fake)
    say(runtime, KEY, ("user", OWNER, "I moved to Lyon."))
    respond = adding("Lives in Lyon")
    fake.responder = lambda rec: Delay(0.3, respond(rec))
    results = await asyncio.gather(dream.run(), runtime.memory.remember("Prefers tea", "Preferences", "telegram"))
    assert results[0].outcome == "committed"  # type: ignore[union-attr]
    text = runtime.memory.show()
    assert "- Prefers tea (" in text and "- Lives in Lyon (2026-12-04, telegram)" in text
    assert {e.message for e in runtime.memory.log()} == {"dream: 1 sessions, +1 -0", "remember: Prefers tea", "init"}


async def test_only_allowed_people_s_words_reach_the_request(tmp_path: Path, fake: FakeLLM) -> None:
    runtime, dream = setup(tmp_path, fake)
    session = runtime.sessions.get(KEY)
    session.append(
        Message.user_text("What is the weather in Lyon?", sender=OWNER),
        Message("assistant", [{"type": "text", "text": "Let me look."},
                              {"type": "tool_use", "id": "t1", "name": "web_fetch", "input": {"url": "TOOL_ARG_X"}}]),
        Message("user", [{"type": "tool_result", "tool_use_id": "t1", "content": "FETCHED_PAGE_TEXT"}]),
        Message("assistant", [{"type": "text", "text": "It is sunny."}]),
        Message.user_text("Remember my PIN is 4711", sender=STRANGER),
        Message("assistant", [{"type": "text", "text": "REPLY_TO_STRANGER"}]),
        Message.user_text("[Report from subagent] CHILD_REPORT", sender="subagent:ab12"),
        Message("assistant", [{"type": "text", "text": "ANSWER_ABOUT_REPORT"}]),
        Message.user_text("I am Sam, a friend of the owner", sender=FRIEND),
        Message("assistant", [{"type": "text", "text": "Hi Sam"}]),
        Message.user_text("SCHEDULED_PROMPT", sender=OWNER, kind="scheduled"),
        Message("user", [{"type": "text", "text": "NOTICE_TEXT"}], kind="notice"))
    say(runtime, "subagent:ab12", ("user", "subagent", "CHILD_TASK"), ("assistant", None, "CHILD_TEXT"))
    fake.responder = adding("Friend Sam")
    result = await dream.run()
    assert result.outcome == "committed" and result.messages == 14 and result.sessions == 1
    sent = json.dumps([r.body for r in fake.requests])
    for absent in ("TOOL_ARG_X", "FETCHED_PAGE_TEXT", "4711", "REPLY_TO_STRANGER", "CHILD_REPORT",
                   "ANSWER_ABOUT_REPORT", "SCHEDULED_PROMPT", "NOTICE_TEXT", "CHILD_TASK", "CHILD_TEXT"):
        assert absent not in sent, absent
    request = prompt_of(fake.requests[0])
    assert "] owner: What is the weather in Lyon?" in request and "] assistant: It is sunny." in request
    assert "] user 42: I am Sam, a friend of the owner" in request and "] assistant: Hi Sam" in request
    assert (await dream.run()).outcome == "nothing"  # the subagent session's cursor moved too


async def test_a_configured_secret_never_reaches_memory(tmp_path: Path, fake: FakeLLM) -> None:
    runtime, dream = setup(tmp_path, fake)
    key = runtime.config.llm.api_key
    assert key
    say(runtime, KEY, ("user", OWNER, f"My API key is {key} and my bot token is {TOKEN}"))
    fake.responder = adding(f"API key is {key}", "Bot token is 123456:telegram-token-abcdefghijklmnopqrstuvwxyz")
    result = await dream.run()
    assert result.outcome == "committed"
    assert key not in json.dumps(fake.requests[0].body) and TOKEN not in json.dumps(fake.requests[0].body)
    text = runtime.memory.show()
    assert key not in text and TOKEN not in text and "API key is ***" in text
    assert all(key not in runtime.memory.show(e.sha) for e in runtime.memory.log())


async def test_long_input_is_split_to_fit_the_context_and_still_one_commit(tmp_path: Path, fake: FakeLLM) -> None:
    runtime, dream = setup(tmp_path, fake, agent={"context_tokens": 2000})
    for index in range(120):
        say(runtime, f"telegram:{index % 3}", ("user", OWNER, f"message {index:03d} " + "x" * 200))
    fake.responder = adding("Writes long messages")
    result = await dream.run()
    assert result.outcome == "committed" and result.calls >= 3 and result.messages == 120
    prompts = [prompt_of(r) for r in fake.requests]
    assert all(len(p) < 8_000 + 2_000 for p in prompts)
    joined = "".join(prompts)
    assert all(f"message {index:03d} " in joined for index in range(120))  # every message, once
    assert sum(p.count("message ") for p in prompts) == 120
    assert [e.message for e in runtime.memory.log()] == ["dream: 3 sessions, +1 -0", "init"]


async def test_a_model_error_commits_nothing_and_keeps_the_cursor(tmp_path: Path, fake: FakeLLM) -> None:
    from tests.fakes.llm import Fail

    runtime, dream = setup(tmp_path, fake)
    say(runtime, KEY, ("user", OWNER, "I moved to Lyon."))
    fake.script(Fail(400, "invalid_request_error", "bad request"))
    result = await dream.run()
    assert result.outcome == "failed" and len(runtime.memory.log()) == 1
    fake.responder = adding("Lives in Lyon")
    assert (await dream.run()).outcome == "committed"


async def test_a_reset_conversation_is_read_to_its_end_and_the_new_one_from_its_start(tmp_path: Path,
                                                                                      fake: FakeLLM) -> None:
    runtime, dream = setup(tmp_path, fake)
    say(runtime, KEY, ("user", OWNER, "first part"))
    fake.responder = adding("Said the first part")
    assert (await dream.run()).outcome == "committed"
    say(runtime, KEY, ("user", OWNER, "second part"))
    runtime.sessions.reset(KEY)  # /new: the file is renamed, a new one starts
    say(runtime, KEY, ("user", OWNER, "third part"))
    fake.responder = adding("Said the third part")
    result = await dream.run()
    assert result.outcome == "committed" and result.messages == 2
    request = conversations(fake.requests[-1])
    assert "first part" not in request and "second part" in request and "third part" in request
    assert (await dream.run()).outcome == "nothing"


async def test_a_line_being_written_is_left_for_the_next_run(tmp_path: Path, fake: FakeLLM) -> None:
    runtime, dream = setup(tmp_path, fake)
    say(runtime, KEY, ("user", OWNER, "complete line"))
    path = runtime.sessions.path_for(KEY)
    with path.open("a") as fh:
        fh.write('{"type":"message","role":"user","content":[{"type":"text","text":"half a li')
    fake.responder = adding("Wrote a complete line")
    result = await dream.run()
    assert result.outcome == "committed" and result.messages == 1
    with path.open("a") as fh:
        fh.write('ne"}],"time":1767225600.0,"sender":"7"}\n')
    fake.responder = adding("Finished a line")
    result = await dream.run()
    assert result.messages == 1 and "half a line" in conversations(fake.requests[-1])
    assert "complete line" not in conversations(fake.requests[-1])


async def test_the_interval_loop_survives_failures_and_runs_again(tmp_path: Path, fake: FakeLLM) -> None:
    runtime, dream = setup(tmp_path, fake)
    say(runtime, KEY, ("user", OWNER, "I moved to Lyon."))
    state = runtime.workspace / "state" / "dream.json"
    state.parent.mkdir(exist_ok=True)
    state.write_text("{damaged")
    seen: list[str] = []

    async def after(result: Any) -> None:
        seen.append(result.outcome)
        if result.outcome == "failed":
            state.unlink()  # the owner moved the damaged file away
        if len(seen) == 1:
            raise RuntimeError("housekeeping broke")  # must not stop the loop either

    dream.after = after
    fake.responder = adding("Lives in Lyon")
    loop = asyncio.create_task(dream.every(0.02))
    try:
        async with asyncio.timeout(10):
            while "committed" not in seen:
                await asyncio.sleep(0.02)
    finally:
        loop.cancel()
    assert seen[0] == "failed" and "Lives in Lyon" in runtime.memory.show()


async def test_a_long_backlog_is_read_over_several_runs(tmp_path: Path, fake: FakeLLM) -> None:
    from memory import dream as dream_module

    runtime, dream = setup(tmp_path, fake, agent={"context_tokens": 2000})
    for index in range(12):
        say(runtime, f"telegram:{index}", *[("user", OWNER, f"chat {index} line {n} " + "y" * 300) for n in range(25)])
    fake.responder = adding("Writes a lot")
    first = await dream.run()
    assert first.outcome == "committed" and first.calls <= dream_module.MAX_CALLS and first.sessions < 12
    second = await dream.run()
    assert second.outcome == "unchanged" and first.sessions + second.sessions == 12
    assert (await dream.run()).outcome == "nothing"
    joined = "".join(conversations(r) for r in fake.requests)
    assert all(joined.count(f"chat {i} line {n} ") == 1 for i in range(12) for n in range(25))


async def test_an_answer_cut_off_at_max_tokens_is_reported(tmp_path: Path, fake: FakeLLM) -> None:
    runtime, dream = setup(tmp_path, fake)
    say(runtime, KEY, ("user", OWNER, "I moved to Lyon."))
    fake.script(Turn(text="<memory>\n# Memory\n\n## About the owner\n\n- Lives in Lyon (2026-12-04, telegram)\n"
                          "</memory>", stop="max_tokens"))
    result = await dream.run()
    assert result.outcome == "invalid" and "cut off at llm.max_tokens (8192)" in result.reason


async def test_the_answer_to_a_scheduled_prompt_is_not_learned_from(tmp_path: Path, fake: FakeLLM) -> None:
    runtime, dream = setup(tmp_path, fake)
    runtime.sessions.get(KEY).append(
        Message.user_text("I moved to Lyon.", sender=OWNER),
        Message.user_text("Morning briefing please", sender=OWNER, kind="scheduled"),
        Message("assistant", [{"type": "text", "text": "NEWS FROM A FETCHED PAGE"}]))
    fake.responder = adding("Lives in Lyon")
    await dream.run()
    assert "NEWS FROM A FETCHED PAGE" not in conversations(fake.requests[0])


async def test_a_session_file_edited_before_the_cursor_is_reread_from_a_line_start(tmp_path: Path,
                                                                                   fake: FakeLLM) -> None:
    runtime, dream = setup(tmp_path, fake)
    say(runtime, KEY, ("user", OWNER, "My password is in this line by mistake"), ("user", OWNER, "harmless"))
    fake.responder = adding("Said things")
    await dream.run()
    path = runtime.sessions.path_for(KEY)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(line for line in lines if b"password" not in line))  # the owner removed it
    runtime.sessions.forget(KEY)
    say(runtime, KEY, ("user", OWNER, "My sister is Ana"))
    fake.responder = adding("Sister Ana")
    result = await dream.run()
    assert result.outcome == "committed" and "My sister is Ana" in conversations(fake.requests[-1])
