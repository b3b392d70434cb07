"""The Telegram adapter through the real python-telegram-bot, against the Bot API stand-in on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.bus import Inbound, Outbound
from agent.config import TelegramChannel
from agent.errors import ChannelError
from channels.access import Access, PairingStore
from channels.base import ChannelContext, DeliveryError
from channels.dedupe import SeenStore
from channels.telegram import TelegramAdapter
from channels.telegram_format import MAX_MESSAGE, ChatBudget, Rate, clean_command, safe_name, to_html
from tests.fakes.telegram import FakeTelegram

OWNER = 7
STRANGER = 50
GROUP = -100123


@dataclass
class Harness:
    fake: FakeTelegram
    adapter: TelegramAdapter
    inbound: asyncio.Queue[Inbound]
    pairing: PairingStore
    inbox: Path

    async def next(self, timeout: float = 3.0) -> Inbound:
        return await asyncio.wait_for(self.inbound.get(), timeout)

    async def only(self, text: str) -> Inbound:
        """Push an owner message and return the next Inbound: it must be that one, so everything
        pushed before it was handled and dropped (PTB handles updates one at a time)."""
        self.fake.push_text(OWNER, text, user_id=OWNER, username="owner")
        msg = await self.next()
        assert msg.text == text, f"expected only {text!r}, got {msg}"
        return msg


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


@contextlib.asynccontextmanager
async def running(tmp_path: Path, fake: FakeTelegram, poll_timeout: float = 30.0,
                  **config: Any) -> AsyncIterator[Harness]:
    seen = SeenStore(tmp_path / "state" / "seen.jsonl")
    queue: asyncio.Queue[Inbound] = asyncio.Queue()

    async def publish(msg: Inbound) -> bool:
        if not seen.first_time(msg.channel, msg.chat_id, msg.message_id):
            return False
        queue.put_nowait(msg)
        return True

    channel = TelegramChannel(type="telegram", token=fake.token, base_url=fake.base_url, **config)
    pairing = PairingStore(tmp_path / "pairing")
    access = Access(channel.label, channel, [str(OWNER)], pairing)
    adapter = TelegramAdapter(channel, ChannelContext(channel.label, publish, access, tmp_path / "inbox"))
    adapter.budget = ChatBudget(Rate(1000, 100), Rate(1000, 100))  # the pacing has its own test
    adapter.poll_timeout = poll_timeout
    await adapter.start()
    try:
        yield Harness(fake, adapter, queue, pairing, tmp_path / "inbox")
    finally:
        await adapter.stop()


async def until(check: Callable[[], bool], timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


def read(path: str) -> bytes:
    return Path(path).read_bytes()


def reply(text: str, *, chat: int = OWNER, kind: Any = "reply", **kw: Any) -> Outbound:
    return Outbound("telegram", str(chat), text, kind=kind, **kw)


# -- inbound ---------------------------------------------------------------------------------------


async def test_message_becomes_inbound(tmp_path: Path, fake: FakeTelegram) -> None:
    async with running(tmp_path, fake) as h:
        message = fake.message(OWNER, user_id=OWNER, username="owner")
        message["text"] = "hello there"
        fake.push_raw({"message": message})
        msg = await h.next()
        assert h.adapter.state.connected and h.adapter.state.last_message
    assert (msg.channel, msg.chat_id, msg.sender_id, msg.text) == ("telegram", "7", "7", "hello there")
    assert msg.message_id == str(message["message_id"])
    assert msg.is_owner and msg.thread_id is None and msg.scope is None
    assert msg.session_key == "telegram:7"
    polls = fake.calls_of("getUpdates")
    assert polls and polls[0]["allowed_updates"] == ["message"]
    (webhook,) = fake.calls_of("deleteWebhook")  # from start_polling; pending updates are kept
    assert not webhook.get("drop_pending_updates")
    assert not h.adapter.state.connected  # after stop


async def test_session_scope_user_sets_the_scope(tmp_path: Path, fake: FakeTelegram) -> None:
    async with running(tmp_path, fake, session_scope="user") as h:
        fake.push_text(OWNER, "hi", user_id=OWNER)
        assert (await h.next()).session_key == "telegram:user:7"


async def test_stranger_gets_a_pairing_code_once_then_is_let_in_after_approval(tmp_path: Path,
                                                                                fake: FakeTelegram) -> None:
    async with running(tmp_path, fake) as h:
        fake.push_text(STRANGER, "hi", user_id=STRANGER, username="mallory")
        sent = await fake.wait_for("sendMessage")
        assert sent[0]["chat_id"] == STRANGER and "parse_mode" not in sent[0]
        code = re.search(r"approve ([A-Z2-9]{8})", sent[0]["text"])
        assert code is not None
        fake.push_text(STRANGER, "hello?", user_id=STRANGER, username="mallory")
        await h.only("sentinel")
        assert len(fake.calls_of("sendMessage")) == 1  # the second message got silence
        assert h.pairing.approve(code.group(1))["sender"] == str(STRANGER)
        fake.push_text(STRANGER, "it's me", user_id=STRANGER, username="mallory")
        msg = await h.next()
    assert (msg.sender_id, msg.text, msg.is_owner) == ("50", "it's me", False)


async def test_group_needs_a_mention_or_a_reply(tmp_path: Path, fake: FakeTelegram) -> None:
    group = {"user_id": STRANGER, "chat_type": "supergroup"}
    async with running(tmp_path, fake, allow_chats=[GROUP]) as h:
        fake.push_text(GROUP, "just chatting", **group)
        fake.push_text(GROUP, "/new@some_other_bot", **group)
        await h.only("sentinel")
        fake.push_text(GROUP, "@reverie_test_bot, what's up?", **group)
        mentioned = await h.next()
        fake.push_text(GROUP, "and then?", reply_to_bot=True, **group)
        replied = await h.next()
        fake.push_text(GROUP, "/usage@reverie_test_bot", **group)
        command = await h.next()
    assert (mentioned.chat_id, mentioned.sender_id, mentioned.text) == (str(GROUP), "50", "what's up?")
    assert replied.text == "and then?"
    assert command.text == "/usage"


async def test_group_not_allowed_is_ignored(tmp_path: Path, fake: FakeTelegram) -> None:
    async with running(tmp_path, fake) as h:
        fake.push_text(GROUP, "@reverie_test_bot hi", user_id=STRANGER, chat_type="group")
        await h.only("sentinel")
    assert not fake.calls_of("sendMessage")  # no pairing codes in groups


@pytest.mark.parametrize(("policy", "delivered"), [("deny", []), ("open", ["chatting", "hi"])])
async def test_group_policy(tmp_path: Path, fake: FakeTelegram, policy: str, delivered: list[str]) -> None:
    async with running(tmp_path, fake, allow_chats=[GROUP], group_policy=policy) as h:
        fake.push_text(GROUP, "chatting", user_id=STRANGER, chat_type="group")
        fake.push_text(GROUP, "@reverie_test_bot hi", user_id=STRANGER, chat_type="group")
        fake.push_text(OWNER, "sentinel", user_id=OWNER)
        texts = [(await h.next()).text for _ in range(len(delivered) + 1)]
    assert texts == [*delivered, "sentinel"]


async def test_commands_pass_through_as_text(tmp_path: Path, fake: FakeTelegram) -> None:
    async with running(tmp_path, fake) as h:
        for text in ("/new@reverie_test_bot", "/help", "/stop", "/usage today", "/whatever x"):
            fake.push_text(OWNER, text, user_id=OWNER)
        texts = [(await h.next()).text for _ in range(5)]
    assert texts == ["/new", "/help", "/stop", "/usage today", "/whatever x"]


async def test_edited_messages_and_bots_are_ignored(tmp_path: Path, fake: FakeTelegram) -> None:
    async with running(tmp_path, fake) as h:
        fake.push_text(OWNER, "/stop", user_id=OWNER, edited=True)
        fake.push_text(OWNER, "beep", user_id=1234, is_bot=True)
        await h.only("sentinel")


async def test_the_same_update_twice_is_published_once(tmp_path: Path, fake: FakeTelegram) -> None:
    async with running(tmp_path, fake) as h:
        message = fake.message(OWNER, user_id=OWNER)
        message["text"] = "only once"
        update_id = fake.push_raw({"message": message})
        fake.push_raw({"update_id": update_id, "message": message})  # one getUpdates answer, twice
        assert (await h.next()).text == "only once"
        fake.push_raw({"message": message})  # redelivered later under a new update id
        await h.only("sentinel")


async def test_forum_topic_is_its_own_session(tmp_path: Path, fake: FakeTelegram) -> None:
    async with running(tmp_path, fake, allow_chats=[GROUP]) as h:
        fake.push_text(GROUP, "@reverie_test_bot hi", user_id=STRANGER, chat_type="supergroup", thread_id=5)
        msg = await h.next()
        assert (msg.thread_id, msg.session_key) == ("5", f"telegram:{GROUP}:5")
        await h.adapter.send(reply("hello topic", chat=GROUP, thread_id="5", reply_to=msg.message_id))
    sent = fake.calls_of("sendMessage")[-1]
    assert (sent["chat_id"], sent["message_thread_id"]) == (GROUP, 5)
    assert sent["reply_parameters"]["message_id"] == int(msg.message_id or 0)


async def test_photo_is_saved_in_the_inbox(tmp_path: Path, fake: FakeTelegram) -> None:
    async with running(tmp_path, fake) as h:
        fake.push_photo(OWNER, b"\xff\xd8big picture", caption="look", user_id=OWNER)
        msg = await h.next()
    assert msg.text == "look" and msg.attachments == ()
    (image,) = msg.images
    assert Path(image) == (h.inbox / f"telegram-7-{msg.message_id}.jpg").resolve()
    assert read(image) == b"\xff\xd8big picture"  # the largest size, not the thumbnail


async def test_document_is_saved_under_a_safe_name(tmp_path: Path, fake: FakeTelegram) -> None:
    async with running(tmp_path, fake) as h:
        fake.push_document(OWNER, b"report", file_name="../../etc/passwd", user_id=OWNER)
        msg = await h.next()
    (path,) = msg.attachments
    assert Path(path).parent == h.inbox.resolve() and Path(path).name == f"telegram-7-{msg.message_id}-passwd"
    assert read(path) == b"report" and msg.images == ()


async def test_failed_download_still_publishes_with_a_note(tmp_path: Path, fake: FakeTelegram) -> None:
    async with running(tmp_path, fake) as h:
        fake.push_document(OWNER, b"gone", file_name="a.pdf", caption="see file", user_id=OWNER)
        fake.files.clear()  # getFile will answer "invalid file_id"
        msg = await h.next()
    assert msg.attachments == () and msg.text.startswith("see file\n")
    assert "could not be downloaded" in msg.text


async def test_typing_until_the_reply(tmp_path: Path, fake: FakeTelegram) -> None:
    async with running(tmp_path, fake) as h:
        h.adapter.typing_interval = 0.02
        h.adapter.typing_budget = ChatBudget(Rate(100, 5), Rate(100, 5))  # the real one allows one every 4 s
        fake.push_text(OWNER, "think hard", user_id=OWNER)
        await h.next()
        actions = await fake.wait_for("sendChatAction", count=2)
        assert actions[0]["action"] == "typing" and actions[0]["chat_id"] == OWNER
        await h.adapter.send(reply("done"))
        count = len(fake.calls_of("sendChatAction"))
        await asyncio.sleep(0.1)
        assert len(fake.calls_of("sendChatAction")) == count


async def test_typing_gives_up_after_its_limit(tmp_path: Path, fake: FakeTelegram) -> None:
    async with running(tmp_path, fake) as h:
        h.adapter.typing_interval, h.adapter.typing_limit = 0.01, 0.05
        fake.push_text(OWNER, "no answer coming", user_id=OWNER)
        await h.next()
        await asyncio.sleep(0.15)
        count = len(fake.calls_of("sendChatAction"))
        await asyncio.sleep(0.1)
        assert 1 <= count == len(fake.calls_of("sendChatAction"))


# -- outbound --------------------------------------------------------------------------------------


async def test_reply_is_html_and_replies_to_the_message(tmp_path: Path, fake: FakeTelegram) -> None:
    async with running(tmp_path, fake) as h:
        message_id = await h.adapter.send(reply("**Done** with `x`, see [docs](https://e.com/a_b?q=1&r=2)",
                                                reply_to="5", turn_id="t1"))
    (sent,) = fake.calls_of("sendMessage")
    assert sent["parse_mode"] == "HTML" and sent["chat_id"] == OWNER
    assert sent["text"] == '<b>Done</b> with <code>x</code>, see <a href="https://e.com/a_b?q=1&amp;r=2">docs</a>'
    assert sent["reply_parameters"] == {"message_id": 5, "allow_sending_without_reply": True}
    assert message_id == str(fake.sent[-1]["message_id"])


async def test_html_is_escaped(tmp_path: Path, fake: FakeTelegram) -> None:
    async with running(tmp_path, fake) as h:
        await h.adapter.send(reply("<script>alert('x')</script> & <b>not bold</b> 2 < 3 > 1"))
    assert fake.calls_of("sendMessage")[0]["text"] == (
        "&lt;script&gt;alert('x')&lt;/script&gt; &amp; &lt;b&gt;not bold&lt;/b&gt; 2 &lt; 3 &gt; 1")


async def test_long_reply_is_split_and_code_blocks_reopen(tmp_path: Path, fake: FakeTelegram) -> None:
    code = "".join(f"value_{i} = {i} < {i + 1}\n" for i in range(600))
    text = "Here:\n\n```python\n" + code + "```\n\nThat's all."
    async with running(tmp_path, fake) as h:
        last = await h.adapter.send(reply(text, reply_to="9"))
    parts = fake.calls_of("sendMessage")
    assert len(parts) >= 3 and all(len(p["text"]) < MAX_MESSAGE for p in parts)
    assert all('<pre><code class="language-python">' in p["text"] for p in parts[:-1])
    assert parts[1]["text"].startswith('<pre><code class="language-python">value_')
    assert all(p["text"].count("<pre>") == p["text"].count("</pre>") for p in parts)
    assert "reply_parameters" in parts[0] and not any("reply_parameters" in p for p in parts[1:])
    assert last == str(fake.sent[-1]["message_id"])
    assert "&lt;" in parts[0]["text"] and parts[-1]["text"].endswith("That's all.")


async def test_parse_error_resends_as_plain_text(tmp_path: Path, fake: FakeTelegram) -> None:
    fake.reject_html = True
    async with running(tmp_path, fake) as h:
        message_id = await h.adapter.send(reply("**bold** <tag>"))
    first, second = fake.calls_of("sendMessage")
    assert first["parse_mode"] == "HTML" and "parse_mode" not in second
    assert second["text"] == "**bold** <tag>" and message_id == str(fake.sent[0]["message_id"])


async def test_retry_after_is_honoured_then_delivered_once(tmp_path: Path, fake: FakeTelegram) -> None:
    async with running(tmp_path, fake) as h:
        fake.fail_next("sendMessage", 429, retry_after=0.05, times=2)
        started = time.monotonic()
        await h.adapter.send(reply("patience"))
        elapsed = time.monotonic() - started
    assert len(fake.calls_of("sendMessage")) == 3 and len(fake.sent) == 1
    assert elapsed >= 0.1


async def test_flood_control_that_persists_is_a_retryable_error(tmp_path: Path, fake: FakeTelegram) -> None:
    async with running(tmp_path, fake) as h:
        fake.fail_next("sendMessage", 429, retry_after=0.01, times=4)
        with pytest.raises(DeliveryError) as caught:
            await h.adapter.send(reply("patience"))
        assert h.adapter.state.last_error == str(caught.value)
    assert caught.value.retryable and caught.value.retry_after == pytest.approx(0.01)
    assert len(fake.calls_of("sendMessage")) == 4 and not fake.sent


@pytest.mark.parametrize(("status", "description", "retryable"), [
    (403, "Forbidden: bot was blocked by the user", False),
    (400, "Bad Request: chat not found", False),
    (502, "Bad Gateway", True),
])
async def test_send_errors_are_translated(tmp_path: Path, fake: FakeTelegram, status: int, description: str,
                                          retryable: bool) -> None:
    async with running(tmp_path, fake) as h:
        fake.fail_next("sendMessage", status, description=description)
        with pytest.raises(DeliveryError) as caught:
            await h.adapter.send(reply("hello"))
    assert caught.value.retryable is retryable and "chat 7" in str(caught.value)
    assert description.split(": ")[-1].lower() in str(caught.value).lower()  # PTB drops the "Bad Request: "
    assert h.adapter.state.last_error == str(caught.value)


async def test_a_retried_outbound_skips_parts_already_delivered(tmp_path: Path, fake: FakeTelegram) -> None:
    text = "\n\n".join(f"Paragraph {i}. " + "word " * 300 for i in range(4))
    out = reply(text, turn_id="t9", reply_to="3")
    async with running(tmp_path, fake) as h:
        fake.fail_next("sendMessage", 502, after=1, description="Bad Gateway")
        with pytest.raises(DeliveryError):
            await h.adapter.send(out)
        assert len(fake.sent) == 1
        last = await h.adapter.send(out)
    texts = [m["text"] for m in fake.sent]
    assert len(texts) == len(set(texts)) == 2 and texts[0].startswith("Paragraph 0") and "Paragraph 3" in texts[1]
    assert last == str(fake.sent[-1]["message_id"])


async def test_progress_outbounds_are_not_sent(tmp_path: Path, fake: FakeTelegram) -> None:
    async with running(tmp_path, fake) as h:
        assert await h.adapter.send(reply("par", kind="delta")) is None
        assert await h.adapter.send(reply("read_file(path='a')", kind="tool")) is None
        assert await h.adapter.send(reply("Something broke (id 3f2a).", kind="error")) is not None
        assert await h.adapter.send(reply("Compacted the session.", kind="notice")) is not None
    assert [c["text"] for c in fake.calls_of("sendMessage")] == ["Something broke (id 3f2a).",
                                                                  "Compacted the session."]


# -- lifecycle -------------------------------------------------------------------------------------


async def test_rejected_token_is_a_clear_channel_error(tmp_path: Path, fake: FakeTelegram) -> None:
    fake.reject_token = True
    with pytest.raises(ChannelError, match=r"rejected the token \(401\).*TELEGRAM_BOT_TOKEN") as caught:
        async with running(tmp_path, fake):
            pass
    assert fake.token not in str(caught.value)
    assert [name for name, _ in fake.calls] == ["getMe"]


async def test_unreachable_api_is_a_channel_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = TelegramChannel(type="telegram", token="1:x", base_url=f"http://127.0.0.1:{port}/bot")
    access = Access("telegram", config, [], PairingStore(tmp_path))

    async def publish(msg: Inbound) -> bool:
        return True

    ctx = ChannelContext("telegram", publish, access, tmp_path / "inbox")
    adapter = TelegramAdapter(config, ctx)
    with pytest.raises(ChannelError, match="Cannot reach the Telegram Bot API"):
        await adapter.start()
    assert not ctx.state.connected and ctx.state.last_error
    await adapter.stop()  # harmless when it never started


async def test_messages_waiting_at_start_are_handled(tmp_path: Path, fake: FakeTelegram) -> None:
    fake.push_text(OWNER, "sent while we were away")
    async with running(tmp_path, fake) as h:
        assert (await h.next()).text == "sent while we were away"


async def test_a_failed_poll_marks_the_channel_down_until_polling_works(tmp_path: Path,
                                                                        fake: FakeTelegram) -> None:
    async with running(tmp_path, fake, poll_timeout=0.2) as h:
        state = h.adapter.state
        fake.fail_next("getUpdates", 502, description="Bad Gateway")  # the poll after the current one
        await until(lambda: not state.connected)
        assert "Bad Gateway" in (state.last_error or "") and state.down_since
        await until(lambda: state.connected)  # PTB polls again after a second; an empty answer will do
        assert state.down_since is None
        await h.only("still listening")


async def test_stop_is_idempotent(tmp_path: Path, fake: FakeTelegram) -> None:
    async with running(tmp_path, fake) as h:
        await h.adapter.stop()
        with pytest.raises(DeliveryError, match="not running"):
            await h.adapter.send(reply("late"))


# -- helpers ---------------------------------------------------------------------------------------


def test_markdown_to_telegram_html() -> None:
    md = "# Title\n- one *it* and _it_\n* two ~~gone~~\nsnake_case_name and 2 * 3 * 4\n```\nraw <b>\n```"
    assert to_html(md) == ("<b>Title</b>\n• one <i>it</i> and <i>it</i>\n• two <s>gone</s>\n"
                           "snake_case_name and 2 * 3 * 4\n<pre>raw &lt;b&gt;</pre>")
    assert to_html("[x](javascript:alert(1))") == "[x](javascript:alert(1))"


def test_command_and_name_helpers() -> None:
    assert clean_command("/new@Reverie_Test_Bot now", "reverie_test_bot") == "/new now"
    assert clean_command("/new@other_bot", "reverie_test_bot") is None
    assert clean_command("no command", "reverie_test_bot") == "no command"
    assert safe_name("..\\..\\x.txt") == "x.txt" and safe_name("...") == "file"


async def test_chat_budget_paces_each_chat() -> None:
    budget = ChatBudget(Rate(per_second=50, burst=2), Rate(per_second=10, burst=1))
    started = time.monotonic()
    for _ in range(4):
        await budget.take("7")
    assert time.monotonic() - started >= 0.035  # two from the burst, two at 50 a second
    assert budget.try_take("8") and budget.try_take("-1") and not budget.try_take("-1")
    budget.pause("8", 0.05)
    assert not budget.try_take("8")
