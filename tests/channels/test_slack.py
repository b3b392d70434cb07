"""The Slack adapter with the real slack-bolt / slack_sdk against FakeSlack on 127.0.0.1."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.bus import Inbound, Outbound
from agent.config import SlackChannel
from agent.errors import ChannelError
from channels.access import Access, PairingStore
from channels.base import ChannelContext, DeliveryError
from channels.dedupe import SeenStore
from channels.slack import SlackAdapter
from channels.slack_format import to_mrkdwn
from tests.fakes.slack import FakeSlack, post_signed

OWNER = "UOWNER"


class Collector:
    """``ctx.publish`` as the daemon's gateway does it: dedupe by (channel, chat, message id), then keep."""

    def __init__(self, seen: SeenStore) -> None:
        self.seen = seen
        self.items: list[Inbound] = []
        self.attempts = 0  # every publish, duplicates included: the adapter itself should not double up
        self._changed = asyncio.Event()

    async def publish(self, msg: Inbound) -> bool:
        self.attempts += 1
        if not self.seen.first_time(msg.channel, msg.chat_id, msg.message_id):
            return False
        self.items.append(msg)
        self._changed.set()
        return True

    async def wait(self, count: int = 1, timeout: float = 3.0) -> list[Inbound]:
        async with asyncio.timeout(timeout):
            while len(self.items) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.items


@dataclass
class Rig:
    fake: FakeSlack
    adapter: SlackAdapter
    inbox: Collector
    pairing: PairingStore
    workdir: Path


def make_rig(fake: FakeSlack, tmp_path: Path, **overrides: Any) -> Rig:
    fields: dict[str, Any] = {"type": "slack", "bot_token": fake.bot_token, "app_token": fake.app_token,
                              "base_url": fake.api_url, "allow_from": ["U1"], "allow_chats": ["C1"]}
    config = SlackChannel(**{**fields, **overrides})
    pairing = PairingStore(tmp_path / "pairing")
    collector = Collector(SeenStore(tmp_path / "state" / "seen.jsonl"))
    ctx = ChannelContext(config.label, collector.publish, Access(config.label, config, [OWNER], pairing),
                         tmp_path / "inbox")
    return Rig(fake, SlackAdapter(config, ctx), collector, pairing, tmp_path)


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:
        yield server


@pytest.fixture
async def rig(fake: FakeSlack, tmp_path: Path) -> AsyncIterator[Rig]:
    rig = make_rig(fake, tmp_path)
    await rig.adapter.start()
    try:
        yield rig
    finally:
        await rig.adapter.stop()


async def sentinel(rig: Rig, count: int) -> Inbound:
    """A DM that must be published as message number ``count``: everything pushed before it is done."""
    await rig.fake.push_message("D1", "sentinel")
    items = await rig.inbox.wait(count)
    assert len(items) == count and items[-1].text == "sentinel", [m.text for m in items]
    return items[-1]


# --- Socket Mode: in ---------------------------------------------------------------------------------


async def test_dm_becomes_an_inbound_and_the_envelope_is_acked(rig: Rig) -> None:
    assert rig.adapter.state.connected and rig.adapter.bot_user_id == "UBOT"
    payload = rig.fake.message_payload("D1", "hello &lt;there&gt; &amp; /new", ts="1700000001.000100")
    envelope = await rig.fake.push_envelope(payload)
    [msg] = await rig.inbox.wait(1)
    await rig.fake.wait_for_ack(envelope)
    assert (msg.channel, msg.chat_id, msg.sender_id) == ("slack", "D1", "U1")
    assert msg.text == "hello <there> & /new"
    assert (msg.message_id, msg.thread_id, msg.is_owner, msg.scope) == ("1700000001.000100", None, False, None)
    assert msg.session_key == "slack:D1" and rig.adapter.state.last_message is not None
    [opened] = rig.fake.calls_of("apps.connections.open")  # once: the adapter hands the URL to the SDK
    assert opened["_token"] == "xapp-test"


async def test_dm_inside_a_thread_is_its_own_session(rig: Rig) -> None:
    await rig.fake.push_message("D1", "more", thread_ts="1700000001.000100")
    [msg] = await rig.inbox.wait(1)
    assert msg.thread_id == "1700000001.000100" and msg.session_key == "slack:D1:1700000001.000100"


async def test_app_mention_in_a_channel_is_answered_in_its_thread(rig: Rig) -> None:
    await rig.fake.push_mention("C1", "<@UBOT> what's up?", ts="1700000002.000200")
    [msg] = await rig.inbox.wait(1)
    assert (msg.chat_id, msg.thread_id, msg.text) == ("C1", "1700000002.000200", "what's up?")
    await rig.fake.push_mention("C1", "<@UBOT|reverie>, and now?", thread_ts="1700000002.000200")
    second = (await rig.inbox.wait(2))[1]
    assert (second.thread_id, second.text) == ("1700000002.000200", "and now?")
    ts = await rig.adapter.send(Outbound("slack", "C1", "fine", thread_id=msg.thread_id))
    [call] = rig.fake.calls_of("chat.postMessage")
    assert (call["channel"], call["thread_ts"], call["text"]) == ("C1", "1700000002.000200", "fine")
    assert ts is not None


async def test_channel_messages_need_a_mention_and_are_not_read_twice(rig: Rig) -> None:
    await rig.fake.push_message("C1", "just chatting", channel_type="channel")
    ts = rig.fake.new_ts()  # Slack sends a mention as a message event and as app_mention, same ts
    await rig.fake.push_message("C1", "<@UBOT> hi", channel_type="channel", ts=ts)
    await rig.fake.push_mention("C1", "<@UBOT> hi", ts=ts)
    await rig.inbox.wait(1)
    await rig.fake.push_mention("C9", "<@UBOT> from a channel nobody allowed")
    await rig.fake.push_mention("D1", "<@UBOT> a DM is read as message.im, not as a mention")
    await sentinel(rig, 2)
    assert rig.inbox.items[0].text == "hi" and rig.fake.calls_of("chat.postMessage") == []
    assert rig.inbox.attempts == 2


async def test_open_group_policy_reads_plain_channel_messages_once(fake: FakeSlack, tmp_path: Path) -> None:
    rig = make_rig(fake, tmp_path, group_policy="open")
    await rig.adapter.start()
    try:
        await fake.push_message("C1", "anyone?", channel_type="channel")
        ts = fake.new_ts()
        await fake.push_message("C1", "<@UBOT> you", channel_type="channel", ts=ts)
        await fake.push_mention("C1", "<@UBOT> you", ts=ts)
        await rig.inbox.wait(2)
        await sentinel(rig, 3)
        assert [m.text for m in rig.inbox.items[:2]] == ["anyone?", "you"] and rig.inbox.attempts == 3
    finally:
        await rig.adapter.stop()


async def test_stranger_gets_a_pairing_code_once_then_is_let_through_after_approval(rig: Rig) -> None:
    await rig.fake.push_message("D9", "hi", user="U9")
    [call] = await rig.fake.wait_for_calls("chat.postMessage")
    assert call["channel"] == "D9"
    code = re.search(r"approve ([A-Z2-9]{8})", call["text"])
    assert code, call["text"]
    await rig.fake.push_message("D9", "hello??", user="U9")
    await sentinel(rig, 1)
    assert len(rig.fake.calls_of("chat.postMessage")) == 1
    rig.pairing.approve(code.group(1))
    await rig.fake.push_message("D9", "approved now", user="U9")
    msg = (await rig.inbox.wait(2))[1]
    assert (msg.sender_id, msg.text) == ("U9", "approved now")


async def test_owner_is_marked(rig: Rig) -> None:
    await rig.fake.push_message("D5", "admin things", user=OWNER)
    [msg] = await rig.inbox.wait(1)
    assert msg.is_owner and msg.sender_id == OWNER


async def test_bots_edits_and_other_subtypes_are_ignored(rig: Rig) -> None:
    push = rig.fake.push_message
    await push("D1", "my own reply", user="UBOT")
    await push("D1", "another bot", bot_id="B2")
    await push("D1", "", user=None, subtype="message_changed")
    await push("D1", "", subtype="message_deleted")
    await push("C1", "joined", channel_type="channel", subtype="channel_join")
    await push("D1", "from a bot", user=None, subtype="bot_message", bot_id="B2")
    await rig.fake.push_envelope(rig.fake.event_payload({"type": "message", "channel": "D1", "user": "U1",
                                                         "text": "hidden", "ts": "1.2", "hidden": True,
                                                         "channel_type": "im"}))
    await sentinel(rig, 1)


async def test_a_redelivered_event_is_published_once(rig: Rig) -> None:
    payload = rig.fake.message_payload("D1", "only once")
    first = await rig.fake.push_envelope(payload)
    await rig.inbox.wait(1)
    again = await rig.fake.push_envelope(payload, retry_attempt=1, retry_reason="timeout")
    await rig.fake.wait_for_ack(first)
    await rig.fake.wait_for_ack(again)
    await sentinel(rig, 2)
    assert [m.text for m in rig.inbox.items] == ["only once", "sentinel"] and rig.inbox.attempts == 3


async def test_shared_image_and_file_land_in_the_inbox(rig: Rig) -> None:
    image = rig.fake.add_file("../../evil photo.png", b"\x89PNG fake", "image/png")
    notes = rig.fake.add_file("notes.txt", b"some notes", "text/plain")
    foreign = {**rig.fake.add_file("x.png", b"x", "image/png"), "url_private": "https://evil.example/x.png",
               "url_private_download": "https://evil.example/x.png"}
    await rig.fake.push_message("D1", "look", subtype="file_share", files=[image, notes, foreign])
    [msg] = await rig.inbox.wait(1)
    inbox = (rig.workdir / "inbox").resolve()
    assert len(msg.images) == 1 and len(msg.attachments) == 1
    saved = Path(msg.images[0])
    assert saved.parent.resolve() == inbox and saved.name.endswith("evil_photo.png")
    assert await asyncio.to_thread(saved.read_bytes) == b"\x89PNG fake"
    assert await asyncio.to_thread(Path(msg.attachments[0]).read_bytes) == b"some notes"
    assert sorted(rig.fake.downloads) == sorted([image["id"], notes["id"]])


# --- out -----------------------------------------------------------------------------------------------


async def test_reply_is_posted_as_mrkdwn_in_the_thread(rig: Rig) -> None:
    text = "# Result\n**Done**: see [docs](https://x.io/?a=1&b=2), `a<b`\n- one\n- two\n~~old~~ *new*"
    ts = await rig.adapter.send(Outbound("slack", "D1", text, thread_id="1700000001.000100", turn_id="t1"))
    [call] = rig.fake.calls_of("chat.postMessage")
    assert call["text"] == ("*Result*\n*Done*: see <https://x.io/?a=1&amp;b=2|docs>, `a&lt;b`\n• one\n• two\n"
                            "~old~ _new_")
    assert (call["thread_ts"], call["unfurl_links"], call["_token"]) == ("1700000001.000100", False, "xoxb-test")
    assert ts == call["_ts"]


async def test_special_characters_are_escaped(rig: Rig) -> None:
    await rig.adapter.send(Outbound("slack", "D1", "if a < b && c > d: <!channel> <@U1>\n```\nx<y && z\n```"))
    [call] = rig.fake.calls_of("chat.postMessage")
    assert call["text"] == ("if a &lt; b &amp;&amp; c &gt; d: &lt;!channel&gt; &lt;@U1&gt;\n```\n"
                            "x&lt;y &amp;&amp; z\n```")
    assert "thread_ts" not in call


async def test_long_reply_is_split_and_returns_the_last_ts(rig: Rig) -> None:
    text = "\n\n".join(f"Paragraph {i}. " + "word " * 300 for i in range(6))
    ts = await rig.adapter.send(Outbound("slack", "D1", text))
    calls = rig.fake.calls_of("chat.postMessage")
    assert len(calls) >= 2 and all(len(c["text"]) <= 3500 for c in calls)
    assert "".join(c["text"] for c in calls).replace("\n", "").replace(" ", "") == text.replace("\n", "").replace(
        " ", "")
    assert ts == calls[-1]["_ts"]


async def test_delta_and_tool_progress_are_not_sent(rig: Rig) -> None:
    assert await rig.adapter.send(Outbound("slack", "D1", "partial", kind="delta")) is None
    assert await rig.adapter.send(Outbound("slack", "D1", "⚙ read_file", kind="tool")) is None
    assert await rig.adapter.send(Outbound("slack", "D1", "heads up", kind="notice")) is not None
    assert [c["text"] for c in rig.fake.calls_of("chat.postMessage")] == ["heads up"]


async def test_rate_limit_is_waited_out_by_the_sdk_and_delivered_once(rig: Rig) -> None:
    rig.fake.fail_next("chat.postMessage", "ratelimited", status=429, retry_after=0)
    ts = await rig.adapter.send(Outbound("slack", "D1", "patience", turn_id="t1"))
    assert ts is not None
    assert [c["text"] for c in rig.fake.calls_of("chat.postMessage")] == ["patience"]
    assert len(rig.fake.rejected) == 1


async def test_rate_limit_that_outlasts_the_retries_is_a_retryable_delivery_error(fake: FakeSlack,
                                                                                    tmp_path: Path) -> None:
    rig = make_rig(fake, tmp_path)
    rig.adapter.rate_limit_retries = 0
    await rig.adapter.start()
    try:
        fake.fail_next("chat.postMessage", "ratelimited", status=429, retry_after=7)
        with pytest.raises(DeliveryError) as caught:
            await rig.adapter.send(Outbound("slack", "D1", "hi"))
        assert caught.value.retryable and caught.value.retry_after == 7
        assert rig.adapter.state.last_error and "ratelimited" in rig.adapter.state.last_error
    finally:
        await rig.adapter.stop()


async def test_a_failed_part_is_resent_without_repeating_the_parts_already_delivered(rig: Rig) -> None:
    text = "\n\n".join(f"Part {i}: " + "x " * 1500 for i in range(3))
    out = Outbound("slack", "D1", text, turn_id="turn-7")
    rig.fake.fail_next("chat.postMessage", "internal_error", status=500, after=1)
    with pytest.raises(DeliveryError) as caught:
        await rig.adapter.send(out)
    assert caught.value.retryable
    assert len(rig.fake.calls_of("chat.postMessage")) == 1
    ts = await rig.adapter.send(out)
    texts = [c["text"] for c in rig.fake.calls_of("chat.postMessage")]
    assert len(texts) == 3 and [t.split(":")[0] for t in texts] == ["Part 0", "Part 1", "Part 2"]
    assert ts == rig.fake.calls_of("chat.postMessage")[-1]["_ts"]
    await rig.adapter.send(out)  # a later, separate delivery of the same text is sent in full again
    assert len(rig.fake.calls_of("chat.postMessage")) == 6


@pytest.mark.parametrize("error", ["channel_not_found", "not_in_channel", "invalid_auth"])
async def test_refusals_are_not_retryable(rig: Rig, error: str) -> None:
    rig.fake.fail_next("chat.postMessage", error, status=200, retry_after=None)
    with pytest.raises(DeliveryError) as caught:
        await rig.adapter.send(Outbound("slack", "C404", "hello"))
    assert not caught.value.retryable and error in str(caught.value)
    assert rig.adapter.state.last_error == str(caught.value)


# --- HTTP mode -----------------------------------------------------------------------------------------


async def test_http_mode_verifies_signatures_and_publishes(fake: FakeSlack, tmp_path: Path) -> None:
    rig = make_rig(fake, tmp_path, mode="http", app_token=None, signing_secret="s3cret", port=0)
    await rig.adapter.start()
    try:
        url = f"http://127.0.0.1:{rig.adapter.http_port}/slack/events"
        status, body = await post_signed(url, {"type": "url_verification", "challenge": "chal-42",
                                               "token": "x"}, "s3cret")
        assert status == 200 and "chal-42" in body
        payload = fake.message_payload("D1", "over http")
        status, _ = await post_signed(url, payload, "s3cret", signature="v0=" + "0" * 64)
        assert status == 401
        status, _ = await post_signed(url, payload, "s3cret")
        assert status == 200
        [msg] = await rig.inbox.wait(1)
        assert (msg.chat_id, msg.text) == ("D1", "over http")
        assert fake.calls_of("apps.connections.open") == []
    finally:
        await rig.adapter.stop()
    assert rig.adapter.http_port is None


# --- start-up errors ---------------------------------------------------------------------------------


async def test_invalid_bot_token_is_a_clear_channel_error(fake: FakeSlack, tmp_path: Path) -> None:
    fake.reject_token = True
    rig = make_rig(fake, tmp_path)
    with pytest.raises(ChannelError, match=r"Slack rejected the bot token \(invalid_auth\)") as caught:
        await rig.adapter.start()
    assert "SLACK_BOT_TOKEN" in str(caught.value) and not rig.adapter.state.connected


async def test_missing_or_refused_app_token_is_a_channel_error(fake: FakeSlack, tmp_path: Path) -> None:
    with pytest.raises(ChannelError, match=r"channels\[N\]\.app_token or SLACK_APP_TOKEN"):
        await make_rig(fake, tmp_path, app_token=None).adapter.start()
    assert fake.calls == []  # refused before any network call
    with pytest.raises(ChannelError, match="refused the app-level token"):
        await make_rig(fake, tmp_path, app_token="xapp-wrong").adapter.start()


async def test_http_mode_without_signing_secret_is_a_channel_error(fake: FakeSlack, tmp_path: Path) -> None:
    with pytest.raises(ChannelError, match="signing_secret"):
        await make_rig(fake, tmp_path, mode="http").adapter.start()


async def test_stop_is_idempotent_and_start_can_be_retried(fake: FakeSlack, tmp_path: Path) -> None:
    rig = make_rig(fake, tmp_path)
    await rig.adapter.stop()
    await rig.adapter.start()
    await rig.adapter.start()  # a supervisor retry: the old socket is closed first
    await rig.adapter.stop()
    await rig.adapter.stop()
    assert not rig.adapter.state.connected


# --- formatting ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("markdown", "mrkdwn"), [
    ("**bold** and __under__ and *it*", "*bold* and _under_ and _it_"),
    ("## Heading **x**", "*Heading x*"),
    ("# **Wrapped**", "*Wrapped*"),
    ("* star bullet\n+ plus bullet\n1. numbered", "• star bullet\n• plus bullet\n1. numbered"),
    ("> quoted <b>", "> quoted &lt;b&gt;"),
    ("```python\n**not bold** & <tag>\n```", "```\n**not bold** &amp; &lt;tag&gt;\n```"),
    ("snake_case_name, 2*3*4 and `*x*`", "snake_case_name, 2*3*4 and `*x*`"),
    ("<https://example.com/a?b=1&c=2>", "<https://example.com/a?b=1&amp;c=2>"),
])
def test_markdown_to_mrkdwn(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn
