"""Garbage updates from the Telegram stand-in: the real adapter keeps serving, and a normal message
pushed after them still reaches the bus."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.bus import Inbound
from agent.config import TelegramChannel
from channels.access import Access, PairingStore
from channels.base import ChannelContext
from channels.telegram import TelegramAdapter
from channels.telegram_format import ChatBudget, Rate
from tests.fakes.telegram import FakeTelegram

OWNER = 7
junk = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=2**63), st.floats(allow_nan=False),
                 st.text(max_size=20), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=4),
                                                                                           st.integers(), max_size=2))
texts = st.one_of(st.text(max_size=50), st.just("x" * 100_000), st.just("\x00\x1b[2J\u202e\ud7ff\r\n"),
                  st.just("/start@other_bot hi"), st.just("@reverie_test_bot /approve ZZZZ"))
entities = st.lists(st.fixed_dictionaries(
    {"type": st.sampled_from(["mention", "bot_command", "text_mention", "bold", "url", "nonsense"]),
     "offset": st.integers(-5, 200_000), "length": st.integers(-5, 200_000)},
    optional={"user": st.just({"id": 999, "is_bot": True, "first_name": "R"}) | junk}) | junk, max_size=3)


@st.composite
def updates(draw: st.DrawFn) -> dict[str, Any]:
    fake = FakeTelegram()
    message = fake.message(draw(st.sampled_from([OWNER, 50, -100123])),
                           chat_type=draw(st.sampled_from(["private", "group", "supergroup", "channel", "weird"])),
                           reply_to_bot=draw(st.booleans()), thread_id=draw(st.none() | st.integers(0, 5)))
    message["text"] = draw(texts)
    message["entities"] = draw(entities)
    for key in draw(st.lists(st.sampled_from([*message, "photo", "document", "caption", "caption_entities",
                                              "sticker", "new_chat_members"]), max_size=4)):
        if draw(st.booleans()):
            message.pop(key, None)
        else:
            message[key] = draw(junk)
    kind = draw(st.sampled_from(["message", "message", "edited_message", "channel_post", "callback_query",
                                 "unknown_type"]))
    update: dict[str, Any] = {kind: message if draw(st.integers(0, 4)) else draw(junk)}
    if draw(st.integers(0, 6)) == 0:  # Telegram's ids are always integers (the stand-in relies on it too)
        update["update_id"] = draw(st.integers(1, 2**62))
    return update


async def _scenario(garbage: list[dict[str, Any]], tmp: Path) -> None:
    received: asyncio.Queue[Inbound] = asyncio.Queue()

    async def publish(msg: Inbound) -> bool:
        received.put_nowait(msg)
        return True

    async with FakeTelegram() as fake:
        channel = TelegramChannel(type="telegram", token=fake.token, base_url=fake.base_url)
        access = Access(channel.label, channel, [str(OWNER)], PairingStore(tmp / "pairing"))
        adapter = TelegramAdapter(channel, ChannelContext(channel.label, publish, access, tmp / "inbox"))
        adapter.budget = ChatBudget(Rate(1000, 100), Rate(1000, 100))
        adapter.poll_timeout = 1.0
        await adapter.start()
        try:
            for update in garbage:
                fake.push_raw(update)
            fake.push_text(OWNER, "still there?", user_id=OWNER, username="owner")
            async with asyncio.timeout(10):
                while (msg := await received.get()).text != "still there?":
                    pass
            assert msg.chat_id == str(OWNER)
        finally:
            await adapter.stop()


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(updates(), min_size=1, max_size=12))
def test_garbage_updates_do_not_stop_the_adapter(garbage: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_scenario(garbage, Path(tmp)))
