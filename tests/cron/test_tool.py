"""The ``cron`` tool through a real turn: the model schedules, lists and cancels jobs for its chat."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.cron.jobs import JobStore
from tests.fakes.llm import FakeLLM, Turn
from tests.fakes.runtime import Chat, runtime_for

TELEGRAM = {"channels": [{"type": "telegram", "token": "123456:cron-tool-token-abcdefghijklmnopqrstu"}],
            "owner": {"telegram": ["7"]}}


def tool_result(fake: FakeLLM, index: int = 1) -> str:
    """The text of the tool result the model got back in request ``index``."""
    for message in reversed(fake.requests[index].body["messages"]):
        for block in message["content"] if isinstance(message["content"], list) else []:
            if block.get("type") == "tool_result":
                content = block["content"]
                return content if isinstance(content, str) else "".join(b.get("text", "") for b in content)
    raise AssertionError("no tool result")


async def ask(talk: Chat, fake: FakeLLM, arguments: dict[str, Any], chat: str = "c1", **kw: Any) -> str:
    fake.script(Turn(tool_calls=[("cron", arguments)]), Turn(text="done"))
    before = len(fake.requests)
    await talk.ask("schedule it", chat, **kw)
    return tool_result(fake, before + 1)


async def test_remind_me_at_5_pm_becomes_a_job_for_this_chat(tmp_path: Path, fake_llm: FakeLLM) -> None:
    runtime = runtime_for(tmp_path, fake_llm, **TELEGRAM)
    async with runtime.running():
        chat = Chat(runtime, channel="telegram")
        text = await ask(chat, fake_llm, {"action": "add", "message": "Remind the owner to call mom.",
                                          "at": "2099-11-23T17:00", "timezone": "Europe/Paris", "name": "mom"},
                         chat="c1", sender="7", is_owner=True)
        assert text.startswith('Scheduled "mom": at 2099-11-23 17:00') and "next run 2099-11-23 17:00 CET" in text
        job = JobStore(runtime.workspace, []).load()["mom"]
        assert job.source == "chat" and job.spec.deliver_to is not None
        assert (job.spec.deliver_to.channel, job.spec.deliver_to.chat) == ("telegram", "c1")

        text = await ask(chat, fake_llm, {"action": "add", "message": "x", "cron": "0 9 * * 8"}, chat="c1")
        assert "day-of-week 8 is out of range" in text  # the model is told what to fix
        text = await ask(chat, fake_llm, {"action": "add", "message": "x"}, chat="c1")
        assert "exactly one of cron, every or at" in text

        other = await ask(chat, fake_llm, {"action": "list"}, chat="c2", sender="42")
        assert other == "No scheduled jobs for this chat."  # someone else's chat does not see it
        refused = await ask(chat, fake_llm, {"action": "remove", "name": "mom"}, chat="c2", sender="42")
        assert "No job named 'mom' for this chat" in refused
        mine = await ask(chat, fake_llm, {"action": "list"}, chat="c1", sender="7")
        assert mine.startswith("- mom: at 2099-11-23 17:00") and "Remind the owner to call mom." in mine
        removed = await ask(chat, fake_llm, {"action": "remove", "name": "mom"}, chat="c1", sender="7")
        assert removed == 'Removed "mom"; it will not run again.'
    assert JobStore(runtime.workspace, []).load() == {}


async def test_from_the_terminal_jobs_go_to_the_owner_on_the_first_channel(tmp_path: Path,
                                                                           fake_llm: FakeLLM) -> None:
    runtime = runtime_for(tmp_path, fake_llm, **TELEGRAM)
    async with runtime.running():
        chat = Chat(runtime, channel="terminal")
        text = await ask(chat, fake_llm, {"action": "add", "message": "Drink water", "every": 2700})
        assert text.startswith('Scheduled "drink-water-') and "every 2700 s" in text
    (job,) = JobStore(runtime.workspace, []).load().values()
    assert job.spec.deliver_to is not None and (job.spec.deliver_to.channel, job.spec.deliver_to.chat) == ("telegram", "7")


async def test_a_running_job_acts_for_its_own_chat_never_for_the_owner(tmp_path: Path, fake_llm: FakeLLM) -> None:
    runtime = runtime_for(tmp_path, fake_llm, **TELEGRAM)
    async with runtime.running():
        chat = Chat(runtime, channel="telegram")
        await ask(chat, fake_llm, {"action": "add", "message": "Owner's secret plan", "every": 3600, "name": "own"},
                  chat="7", sender="7", is_owner=True)
        # A job created by someone else runs; its turn is not the owner's, whoever its default target is.
        listed = await ask(chat, fake_llm, {"action": "list"}, chat="c9", sender="cron", scheduled=True,
                           scope="cron:theirs")
        assert listed == "No scheduled jobs for this chat."
        refused = await ask(chat, fake_llm, {"action": "remove", "name": "own"}, chat="c9", sender="cron",
                            scheduled=True, scope="cron:theirs")
        assert "No job named 'own' for this chat" in refused
        fast = await ask(chat, fake_llm, {"action": "add", "message": "spam", "every": 60}, chat="c9", sender="cron",
                         scheduled=True, scope="cron:theirs")
        assert "every must be at least 300 seconds" in fast
    assert list(JobStore(runtime.workspace, []).load()) == ["own"]


async def test_where_each_person_has_a_conversation_a_job_remembers_whose_it_is(tmp_path: Path,
                                                                                 fake_llm: FakeLLM) -> None:
    """session_scope: user. A job asked for in a group is delivered to the group, and what it sent is
    noted in the conversation of the person who asked; others in the group still see it as the chat's."""
    runtime = runtime_for(tmp_path, fake_llm, **TELEGRAM)
    async with runtime.running():
        chat = Chat(runtime, channel="telegram")
        await ask(chat, fake_llm, {"action": "add", "message": "Stand-up", "cron": "0 9 * * 1-5", "name": "standup"},
                  chat="-100", sender="42", scope="telegram:user:42")
        listed = await ask(chat, fake_llm, {"action": "list"}, chat="-100", sender="43", scope="telegram:user:43")
        assert listed.startswith("- standup:")
    target = JobStore(runtime.workspace, []).load()["standup"].spec.deliver_to
    assert target is not None and target.place == ("telegram", "-100", None)
    assert target.session == "telegram:user:42"
