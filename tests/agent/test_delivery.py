"""Delivery guarantees: the journal, retries, redelivery after a restart, dedupe, and resumed turns."""

from __future__ import annotations

import json
from pathlib import Path

from agent.bus import Inbound, Outbound
from agent.delivery import RESENT, Delivery
from agent.gateway import Gateway
from agent.journal import Journal
from agent.service import RESUMED
from agent.types import Message
from channels.access import PairingStore
from channels.base import ChannelState, DeliveryError
from channels.dedupe import SeenStore
from tests.fakes.llm import FakeLLM, Turn
from tests.fakes.runtime import Chat, runtime_for


class Recorder:
    """A chat platform at the Channel seam: records sends, fails on request."""

    def __init__(self, failures: list[DeliveryError] | None = None) -> None:
        self.name, self.state = "test", ChannelState(connected=True)
        self.sent: list[Outbound] = []
        self.failures = failures or []

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, out: Outbound) -> str | None:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(out)
        return f"m{len(self.sent)}"


def out(text: str, chat: str = "c1", turn: str = "t1", kind: str = "reply") -> Outbound:
    return Outbound("test", chat, text, kind, None, None, turn)  # type: ignore[arg-type]


def test_journal_keeps_only_unfinished_work(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    done, open_turn = Inbound("test", "c1", "u", "answered"), Inbound("test", "c2", "u", "never answered")
    journal.turn_started(done, "t1")
    journal.turn_started(open_turn, "t2")
    confirmed = journal.intent(out("reply to t1", turn="t1"))
    journal.receipt(confirmed, "m1")
    unconfirmed = journal.intent(out("a notice", kind="notice", turn="t2"))
    with open(tmp_path / "journal.jsonl", "a") as fh:
        fh.write('{"op":"receipt","id":"')  # torn by a crash
    pending = journal.pending()
    assert [(t, m.text) for t, m in pending.turns] == [("t2", "never answered")]
    assert [(i, o.text) for i, o in pending.intents] == [(unconfirmed, "a notice")]
    assert len((tmp_path / "journal.jsonl").read_text().splitlines()) == 2  # rewritten small
    assert Journal(tmp_path / "journal.jsonl").pending().turns[0][1] == open_turn


async def test_failed_send_is_retried_then_confirmed_once(tmp_path: Path) -> None:
    channel = Recorder([DeliveryError("flaky", retry_after=0.01), DeliveryError("flaky again")])
    journal = Journal(tmp_path / "j.jsonl")
    delivery = Delivery(journal, {"test": channel}, backoff=(0.01,))
    delivery.submit(journal.intent(out("hello")), out("hello"))
    assert await delivery.flush(5) == 0
    assert [o.text for o in channel.sent] == ["hello"]
    assert journal.pending().intents == []


async def test_permanent_failure_is_not_retried(tmp_path: Path) -> None:
    channel = Recorder([DeliveryError("blocked by the user", retryable=False)])
    journal = Journal(tmp_path / "j.jsonl")
    delivery = Delivery(journal, {"test": channel}, backoff=(0.01,))
    delivery.submit(journal.intent(out("hello")), out("hello"))
    await delivery.flush(5)
    assert '"op":"abandoned"' in (tmp_path / "j.jsonl").read_text()
    assert channel.sent == [] and journal.pending().intents == []


async def test_one_chat_keeps_its_order_while_another_is_not_blocked(tmp_path: Path) -> None:
    channel = Recorder([DeliveryError("slow start")])
    journal = Journal(tmp_path / "j.jsonl")
    delivery = Delivery(journal, {"test": channel}, backoff=(0.2,))
    for item in (out("a1", "a", "t1"), out("a2", "a", "t2"), out("b1", "b", "t3")):
        delivery.submit(journal.intent(item), item)
    await delivery.flush(5)
    texts = [o.text for o in channel.sent]
    assert texts.index("a1") < texts.index("a2") and texts[0] == "b1"


async def test_unconfirmed_replies_are_resent_marked_as_delayed(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    journal.intent(out("the answer"))  # the process died before the platform confirmed
    channel = Recorder()
    delivery = Delivery(journal, {"test": channel})
    delivery.redeliver(Journal(tmp_path / "j.jsonl").pending().intents)
    await delivery.flush(5)
    assert channel.sent[0].text == f"{RESENT}\n\nthe answer"
    assert journal.pending().intents == []


async def test_gateway_dedupes_and_keeps_admin_commands_for_the_owner(tmp_path: Path, fake_llm: FakeLLM) -> None:
    runtime = runtime_for(tmp_path, fake_llm)
    journal, pairing = Journal(tmp_path / "j.jsonl"), PairingStore(tmp_path / "pairing")
    gateway = Gateway(runtime.bus, journal, SeenStore(tmp_path / "seen.jsonl"), pairing, lambda: "all good")
    msg = Inbound("test", "c1", "u1", "hello", message_id="100")
    assert await gateway.publish(msg) is True
    assert await gateway.publish(msg) is False
    gateway2 = Gateway(runtime.bus, journal, SeenStore(tmp_path / "seen.jsonl"), pairing, lambda: "")
    assert await gateway2.publish(msg) is False  # also after a restart
    assert runtime.bus.inbound.qsize() == 1
    code = pairing.request("test", "stranger", "s1")
    assert code is not None
    await gateway.publish(Inbound("test", "c1", "u1", f"/approve {code}", message_id="101"))
    await gateway.publish(Inbound("test", "c1", "boss", "/status", message_id="102", is_owner=True))
    await gateway.publish(Inbound("test", "c1", "boss", f"/approve {code}", message_id="103", is_owner=True))
    replies = [runtime.bus.outbound("test").get_nowait().text for _ in range(3)]
    assert replies == ["Only the owner can use /approve.", "all good", "Approved stranger on test."]
    assert pairing.is_approved("test", "stranger")


async def test_messages_arriving_while_draining_wait_for_the_next_start(tmp_path: Path, fake_llm: FakeLLM) -> None:
    runtime = runtime_for(tmp_path, fake_llm)
    journal = Journal(tmp_path / "j.jsonl")
    gateway = Gateway(runtime.bus, journal, SeenStore(tmp_path / "seen.jsonl"), PairingStore(tmp_path / "p"),
                      lambda: "")
    gateway.draining = True
    await gateway.publish(Inbound("test", "c1", "u1", "late message", message_id="7"))
    assert runtime.bus.inbound.empty()
    runtime.service.journal = journal
    fake_llm.script(Turn(text="answered after restart"))
    async with runtime.running():
        for turn_id, msg in journal.pending().turns:
            runtime.service.dispatch(msg, resume=turn_id)
        reply = await Chat(runtime).final()
    assert reply.text == f"{RESUMED}\n\nanswered after restart"
    assert "late message" in json.dumps(fake_llm.requests[0].body)


async def test_turn_whose_answer_was_ready_is_delivered_without_a_new_model_call(
        tmp_path: Path, fake_llm: FakeLLM) -> None:
    runtime = runtime_for(tmp_path, fake_llm)
    msg = Inbound("test", "c1", "u1", "question", message_id="9")
    session = runtime.sessions.get(msg.session_key)
    session.append(Message.user_text("question", msg_id="9", time=msg.time),
                   Message("assistant", [{"type": "text", "text": "the finished answer"}]))
    async with runtime.running():
        runtime.service.dispatch(msg, resume="t-crashed")
        reply = await Chat(runtime).final()
    assert reply.text.endswith("the finished answer") and reply.turn_id == "t-crashed"
    assert fake_llm.requests == []


async def test_two_resumed_turns_each_get_their_own_answer(tmp_path: Path, fake_llm: FakeLLM) -> None:
    # The first turn's answer was stored, the crash came before its reply was journaled, and the
    # second message had already reached the session.
    runtime = runtime_for(tmp_path, fake_llm)
    first = Inbound("test", "c1", "u1", "question one", message_id="9")
    second = Inbound("test", "c1", "u1", "question two", message_id="10")
    runtime.sessions.get(first.session_key).append(
        Message.user_text("question one", msg_id="9", time=first.time),
        Message("assistant", [{"type": "text", "text": "answer one"}]),
        Message.user_text("question two", msg_id="10", time=second.time))
    fake_llm.script(Turn(text="answer two"))
    async with runtime.running():
        runtime.service.dispatch(first, resume="t-one")
        runtime.service.dispatch(second, resume="t-two")
        chat = Chat(runtime)
        replies = [await chat.final(), await chat.final()]
    assert [(r.turn_id, r.text.split("\n\n")[-1]) for r in replies] == [("t-one", "answer one"),
                                                                       ("t-two", "answer two")]
    assert len(fake_llm.requests) == 1 and "question one" in json.dumps(fake_llm.requests[0].body)


async def test_turn_cut_by_a_crash_mid_tool_continues_from_the_session(tmp_path: Path, fake_llm: FakeLLM) -> None:
    runtime = runtime_for(tmp_path, fake_llm)
    msg = Inbound("test", "c1", "u1", "list files", message_id="11")
    session = runtime.sessions.get(msg.session_key)
    session.append(Message.user_text("list files", msg_id="11", time=msg.time),
                   Message("assistant", [{"type": "tool_use", "id": "toolu_9", "name": "list_dir", "input": {}}]))
    runtime.sessions = type(runtime.sessions)(runtime.workspace / "sessions")  # as after a restart
    runtime.service.sessions = runtime.sessions
    fake_llm.script(Turn(text="here they are"))
    async with runtime.running():
        runtime.service.dispatch(msg, resume="t-cut")
        reply = await Chat(runtime).final()
    assert reply.text.endswith("here they are")
    body = json.dumps(fake_llm.requests[0].body)
    assert body.count("list files") == 1 and "toolu_9" in body


async def test_an_outage_of_any_length_is_waited_out(tmp_path: Path) -> None:
    channel = Recorder([DeliveryError("network down") for _ in range(30)])
    journal = Journal(tmp_path / "j.jsonl")
    delivery = Delivery(journal, {"test": channel}, backoff=(0.001,))
    delivery.submit(journal.intent(out("hello")), out("hello"))
    await delivery.flush(10)
    assert [o.text for o in channel.sent] == ["hello"]
    assert '"op":"abandoned"' not in (tmp_path / "j.jsonl").read_text()


async def test_a_stop_during_an_outage_leaves_the_reply_for_the_next_start(tmp_path: Path) -> None:
    channel = Recorder([DeliveryError("network down") for _ in range(1000)])
    journal = Journal(tmp_path / "j.jsonl")
    delivery = Delivery(journal, {"test": channel}, backoff=(0.01,))
    delivery.submit(journal.intent(out("hello")), out("hello"))
    assert await delivery.flush(0.1) == 1
    assert [o.text for _, o in Journal(tmp_path / "j.jsonl").pending().intents] == ["hello"]


async def test_a_message_waiting_behind_a_running_turn_survives_a_crash(tmp_path: Path, fake_llm: FakeLLM) -> None:
    runtime = runtime_for(tmp_path, fake_llm)
    journal = Journal(tmp_path / "j.jsonl")
    gateway = Gateway(runtime.bus, journal, SeenStore(tmp_path / "seen.jsonl"), PairingStore(tmp_path / "p"),
                      lambda: "")
    await gateway.publish(Inbound("test", "c1", "u1", "first", message_id="1"))
    await gateway.publish(Inbound("test", "c1", "u1", "second", message_id="2"))
    # the process dies here: nothing ran yet, both were only queued in memory
    pending = Journal(tmp_path / "j.jsonl").pending()
    assert [m.text for _, m in pending.turns] == ["first", "second"]
    assert all(m.turn_id == t for t, m in pending.turns)


async def test_stop_is_never_replayed_after_a_restart(tmp_path: Path, fake_llm: FakeLLM) -> None:
    runtime = runtime_for(tmp_path, fake_llm)
    journal = Journal(tmp_path / "j.jsonl")
    gateway = Gateway(runtime.bus, journal, SeenStore(tmp_path / "seen.jsonl"), PairingStore(tmp_path / "p"),
                      lambda: "")
    gateway.draining = True
    await gateway.publish(Inbound("test", "c1", "u1", "/stop", message_id="5"))
    assert journal.pending().turns == []
    assert "restarting" in runtime.bus.outbound("test").get_nowait().text


def test_the_journal_stays_small_in_a_long_running_daemon(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl", compact_at=20_000)
    journal.pending()
    for i in range(300):
        msg = Inbound("test", "c1", "u1", "x" * 200, message_id=str(i))
        journal.turn_started(msg, f"t{i}")
        journal.receipt(journal.intent(out("y" * 200, turn=f"t{i}")), "m")
    journal.turn_started(Inbound("test", "c1", "u1", "still open"), "open")
    journal.receipt(journal.intent(out("z", turn="other")), "m")
    assert (tmp_path / "j.jsonl").stat().st_size < 25_000
    assert [m.text for _, m in Journal(tmp_path / "j.jsonl").pending().turns] == ["still open"]
