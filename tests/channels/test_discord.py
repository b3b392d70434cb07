"""The Discord adapter with the real discord.py client against the loopback stand-in."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import discord.gateway
import discord.http
import pytest
import yarl

from agent.bus import Inbound, Outbound
from agent.config import DiscordChannel
from agent.errors import ChannelError
from channels.access import Access, PairingStore
from channels.base import ChannelContext, DeliveryError
from channels.dedupe import SeenStore
from channels.discord import DiscordAdapter
from tests.fakes.discord import BOT_ID, TOKEN, FakeDiscord

OWNER = 111
STRANGER = 222
MEMBER = 333
DM = 42
GUILD = 5
ROOM = 50  # an allowed server channel
OTHER_ROOM = 51


@dataclass
class Rig:
    adapter: DiscordAdapter
    published: list[Inbound]
    pairing: PairingStore
    inbox: Path


Start = Callable[..., Awaitable[Rig]]


def make_rig(tmp_path: Path, **config: Any) -> Rig:
    cfg = DiscordChannel(type="discord", token=TOKEN, **config)
    pairing = PairingStore(tmp_path / "pairing")
    seen = SeenStore(tmp_path / "state" / "seen.jsonl")
    published: list[Inbound] = []

    async def publish(inbound: Inbound) -> bool:
        if not seen.first_time(inbound.channel, inbound.chat_id, inbound.message_id):
            return False
        published.append(inbound)
        return True

    access = Access(cfg.label, cfg, [str(OWNER)], pairing)
    ctx = ChannelContext(cfg.label, publish, access, tmp_path / "inbox")
    return Rig(DiscordAdapter(cfg, ctx), published, pairing, tmp_path / "inbox")


async def until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        server.redirect(monkeypatch)
        yield server


@pytest.fixture
async def start(fake: FakeDiscord, tmp_path: Path) -> AsyncIterator[Start]:
    rigs: list[Rig] = []

    async def _start(**config: Any) -> Rig:
        rig = make_rig(tmp_path / str(len(rigs)), **{"allow_chats": [str(ROOM)], **config})
        rigs.append(rig)
        await rig.adapter.start()
        return rig

    yield _start
    for rig in rigs:
        await rig.adapter.stop()


@pytest.fixture
async def rig(start: Start) -> Rig:
    return await start()


async def sentinel(fake: FakeDiscord, rig: Rig) -> None:
    """An owner DM processed after everything pushed before it (events are handled in order)."""
    await fake.push_message(DM, "sentinel", author_id=OWNER)
    await until(lambda: any(m.text == "sentinel" for m in rig.published))


def read(path: Path) -> bytes:
    return path.read_bytes()


def texts(rig: Rig) -> list[str]:
    return [m.text for m in rig.published if m.text != "sentinel"]


# inbound


async def test_owner_dm_becomes_an_inbound(fake: FakeDiscord, rig: Rig) -> None:
    assert rig.adapter.state.connected and rig.adapter.name == "discord"
    sent = await fake.push_message(DM, "/new hello", author_id=OWNER)
    await until(lambda: len(rig.published) == 1)
    msg = rig.published[0]
    assert (msg.channel, msg.chat_id, msg.sender_id) == ("discord", str(DM), str(OWNER))
    assert (msg.message_id, msg.text, msg.is_owner, msg.scope) == (sent["id"], "/new hello", True, None)
    assert rig.adapter.state.last_message is not None


async def test_session_scope_user(fake: FakeDiscord, start: Start) -> None:
    rig = await start(session_scope="user")
    await fake.push_message(DM, "hi", author_id=OWNER)
    await until(lambda: len(rig.published) == 1)
    assert rig.published[0].scope == f"discord:user:{OWNER}"


async def test_stranger_gets_a_pairing_code_once_then_is_let_in_after_approval(fake: FakeDiscord, rig: Rig) -> None:
    await fake.push_message(DM, "hi", author_id=STRANGER)
    await until(lambda: len(fake.calls_of("POST", f"/channels/{DM}/messages")) == 1)
    await fake.push_message(DM, "hello?", author_id=STRANGER)
    await sentinel(fake, rig)
    replies = fake.calls_of("POST", f"/channels/{DM}/messages")
    assert len(replies) == 1 and texts(rig) == []
    code = replies[0]["json"]["content"].rsplit("approve ", 1)[1].split(".")[0]
    rig.pairing.approve(code)
    await fake.push_message(DM, "let me in", author_id=STRANGER)
    await until(lambda: texts(rig) == ["let me in"])
    assert not rig.published[-1].is_owner


async def test_bots_and_the_bot_itself_are_ignored(fake: FakeDiscord, rig: Rig) -> None:
    await fake.push_message(DM, "from a bot", author_id=4444, author_bot=True)
    await fake.push_message(DM, "from myself", author_id=BOT_ID, author_bot=True)
    await sentinel(fake, rig)
    assert texts(rig) == [] and fake.calls_of("POST", f"/channels/{DM}/messages") == []


async def test_edits_are_ignored(fake: FakeDiscord, rig: Rig) -> None:
    sent = await fake.push_message(DM, "/stop", author_id=OWNER)
    await until(lambda: len(rig.published) == 1)
    await fake.dispatch("MESSAGE_UPDATE", {**sent, "content": "/stop", "edited_timestamp": sent["timestamp"]})
    await sentinel(fake, rig)
    assert texts(rig) == ["/stop"]


async def test_the_same_message_create_twice_is_published_once(fake: FakeDiscord, rig: Rig) -> None:
    await fake.push_message(DM, "once", author_id=OWNER, message_id=777)
    await fake.push_message(DM, "once", author_id=OWNER, message_id=777)
    await sentinel(fake, rig)
    assert texts(rig) == ["once"]


async def test_server_message_needs_a_mention_which_is_stripped(fake: FakeDiscord, rig: Rig) -> None:
    await fake.push_message(ROOM, "just chatting", author_id=MEMBER, guild_id=GUILD)
    await sentinel(fake, rig)
    assert texts(rig) == []
    await fake.push_message(ROOM, "what time is it?", author_id=MEMBER, guild_id=GUILD, mentions_bot=True)
    await fake.push_message(ROOM, "and tomorrow?", author_id=MEMBER, guild_id=GUILD, reply_to_bot=True)
    await until(lambda: len(texts(rig)) == 2)
    assert texts(rig) == ["what time is it?", "and tomorrow?"]
    assert rig.published[-1].chat_id == str(ROOM) and not rig.published[-1].is_owner


async def test_allow_chats_applies_to_channels_and_thread_parents(fake: FakeDiscord, rig: Rig) -> None:
    await fake.push_message(OTHER_ROOM, "hey", author_id=MEMBER, guild_id=GUILD, mentions_bot=True)
    await fake.push_message(61, "hey", author_id=MEMBER, guild_id=GUILD, thread_parent_id=OTHER_ROOM,
                            mentions_bot=True)
    await sentinel(fake, rig)
    assert texts(rig) == [] and fake.calls_of("POST", "/channels/5") == []  # no pairing codes in servers
    await fake.push_message(60, "in a thread", author_id=MEMBER, guild_id=GUILD, thread_parent_id=ROOM,
                            mentions_bot=True)
    await until(lambda: texts(rig) == ["in a thread"])
    assert rig.published[-1].chat_id == "60"  # a thread is a session of its own


async def test_image_and_file_attachments_land_in_the_inbox(fake: FakeDiscord, rig: Rig) -> None:
    files = [("../../evil cat.png", "image/png", b"\x89PNG fake"), ("notes.txt", "text/plain", b"a note")]
    await fake.push_message(DM, "look", author_id=OWNER, attachments=files)
    await until(lambda: len(rig.published) == 1)
    msg = rig.published[0]
    assert msg.text == "look" and len(msg.images) == 1 and len(msg.attachments) == 1
    image, note = Path(msg.images[0]), Path(msg.attachments[0])
    assert image.parent == rig.inbox.resolve() and image.name.endswith("evil_cat.png")
    assert read(image) == b"\x89PNG fake" and read(note) == b"a note"


async def test_failed_download_is_published_with_a_note(fake: FakeDiscord, rig: Rig) -> None:
    fake.fail_next("/attachments", status=404)
    await fake.push_message(DM, "see file", author_id=OWNER, attachments=[("a.png", "image/png", b"x")])
    await until(lambda: len(rig.published) == 1)
    msg = rig.published[0]
    assert msg.images == () and msg.text.startswith("see file\n[Attachment 'a.png' could not be downloaded")


async def test_typing_indicator_runs_until_the_reply(fake: FakeDiscord, rig: Rig) -> None:
    def typing_tasks() -> list[str]:
        return [t.get_name() for t in asyncio.all_tasks() if t.get_name() == f"discord typing {DM}"]

    await fake.push_message(DM, "think hard", author_id=OWNER)
    await until(lambda: len(fake.calls_of("POST", f"/channels/{DM}/typing")) == 1)
    assert typing_tasks()
    await rig.adapter.send(Outbound("discord", str(DM), "done"))
    await until(lambda: not typing_tasks())


# outbound


async def test_reply_references_the_message_and_never_pings(fake: FakeDiscord, rig: Rig) -> None:
    message_id = await rig.adapter.send(Outbound("discord", str(DM), "@everyone hi <@1>", reply_to="555"))
    [call] = fake.calls_of("POST", f"/channels/{DM}/messages")
    body = call["json"]
    assert body["content"] == "@everyone hi <@1>"
    assert body["message_reference"] == {"type": 0, "message_id": 555, "channel_id": DM, "fail_if_not_exists": False}
    assert body["allowed_mentions"] == {"parse": []}
    assert message_id is not None and int(message_id) in fake.messages


async def test_delta_and_tool_are_not_sent(fake: FakeDiscord, rig: Rig) -> None:
    for kind in ("delta", "tool"):
        assert await rig.adapter.send(Outbound("discord", str(DM), "x", kind=kind)) is None  # type: ignore[arg-type]
    assert await rig.adapter.send(Outbound("discord", str(DM), "note", kind="notice")) is not None
    assert len(fake.calls_of("POST", f"/channels/{DM}/messages")) == 1


async def test_long_reply_is_split_with_code_blocks_reopened(fake: FakeDiscord, rig: Rig) -> None:
    code = "\n".join(f"print({i})  # line {i}" for i in range(200))
    text = f"Here you go:\n\n```python\n{code}\n```\nThat's all."
    last = await rig.adapter.send(Outbound("discord", str(DM), text, reply_to="555"))
    bodies = [c["json"] for c in fake.calls_of("POST", f"/channels/{DM}/messages")]
    assert len(bodies) >= 3 and all(len(b["content"]) <= 2000 for b in bodies)
    assert "message_reference" in bodies[0] and all("message_reference" not in b for b in bodies[1:])
    assert all(b["content"].startswith("```python") for b in bodies[1:-1])
    assert all(b["content"].count("```") % 2 == 0 for b in bodies)
    assert last == str(max(fake.messages))


async def test_429_is_honoured_and_delivered_once(fake: FakeDiscord, rig: Rig) -> None:
    fake.fail_next(f"/channels/{DM}/messages", status=429, retry_after=0.05)
    began = time.monotonic()
    assert await rig.adapter.send(Outbound("discord", str(DM), "patience")) is not None
    assert time.monotonic() - began >= 0.05
    assert [c["status"] for c in fake.calls_of("POST", f"/channels/{DM}/messages")] == [429, 200]
    assert [m["content"] for m in fake.messages.values()] == ["patience"]


@pytest.mark.parametrize(("status", "retryable"), [(503, True), (403, False), (404, False), (400, False)])
async def test_failures_map_to_delivery_errors(fake: FakeDiscord, rig: Rig, status: int, retryable: bool) -> None:
    fake.fail_next(f"/channels/{DM}/messages", status=status)
    with pytest.raises(DeliveryError) as caught:
        await rig.adapter.send(Outbound("discord", str(DM), "x"))
    assert caught.value.retryable is retryable
    assert rig.adapter.state.last_error == str(caught.value)


async def test_a_failed_part_is_retried_without_resending_earlier_parts(fake: FakeDiscord, rig: Rig) -> None:
    text = "\n\n".join(f"paragraph {i} " + "x" * 1500 for i in range(3))
    out = Outbound("discord", str(DM), text, turn_id="t1")
    fake.fail_next(f"/channels/{DM}/messages", status=503, after=1)
    with pytest.raises(DeliveryError):
        await rig.adapter.send(out)
    assert len(fake.messages) == 1
    await rig.adapter.send(out)
    contents = [m["content"] for m in fake.messages.values()]
    assert [c.split(" ", 2)[1] for c in contents] == ["0", "1", "2"]


async def test_a_repeated_turn_after_a_restart_is_dropped_by_its_nonce(fake: FakeDiscord, start: Start) -> None:
    out = Outbound("discord", str(DM), "the answer", turn_id="t2")
    first = await (await start()).adapter.send(out)
    second = await (await start()).adapter.send(out)  # a fresh adapter has no memory of the first send
    assert first == second and len(fake.messages) == 1


async def test_send_to_a_bad_chat_id_is_not_retryable(rig: Rig) -> None:
    with pytest.raises(DeliveryError) as caught:
        await rig.adapter.send(Outbound("discord", "not-a-snowflake", "x"))
    assert not caught.value.retryable


# connection


async def test_invalid_token_is_a_clear_channel_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    async with FakeDiscord(reject_token=True) as server:
        server.redirect(monkeypatch)
        rig = make_rig(tmp_path)
        with pytest.raises(ChannelError, match=r"rejected the token \(401\).*DISCORD_BOT_TOKEN"):
            await rig.adapter.start()
        assert not rig.adapter.state.connected and "401" in (rig.adapter.state.last_error or "")
        await rig.adapter.stop()  # idempotent after a failed start


async def test_unreachable_discord_is_a_channel_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    async with FakeDiscord() as server:
        url = server.api_url
    monkeypatch.setattr(discord.http.Route, "BASE", url)  # the port is closed now
    rig = make_rig(tmp_path)
    with pytest.raises(ChannelError, match="Cannot connect to Discord"):
        await rig.adapter.start()


async def test_unreachable_gateway_times_out(fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    async with FakeDiscord() as gone:
        url = gone.gateway_url
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(url))  # REST works, no gateway
    rig = make_rig(tmp_path)
    rig.adapter.ready_timeout = 0.3
    with pytest.raises(ChannelError, match=r"did not become ready|Cannot connect to Discord"):
        await rig.adapter.start()
    assert not rig.adapter.state.connected


async def test_gateway_drop_is_reflected_and_resumed(fake: FakeDiscord, rig: Rig) -> None:
    await fake.drop_gateway()
    await until(lambda: len(fake.ops(6)) == 1 and rig.adapter.state.connected)
    assert "disconnected" in (rig.adapter.state.last_error or "") and fake.connections == 2
    await fake.push_message(DM, "still there?", author_id=OWNER)
    await until(lambda: texts(rig) == ["still there?"])


async def test_stop_is_idempotent_and_send_after_stop_is_retryable(rig: Rig) -> None:
    await rig.adapter.stop()
    await rig.adapter.stop()
    assert not rig.adapter.state.connected
    with pytest.raises(DeliveryError) as caught:
        await rig.adapter.send(Outbound("discord", str(DM), "x"))
    assert caught.value.retryable
