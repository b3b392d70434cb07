"""One daemon, three platforms at once: Telegram, Discord and Slack stand-ins, the real SDKs, the real
gateway, journal, delivery and agent, in process. Also: owner alerts when a channel stays down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.config_file import validate
from agent.daemon import build_daemon
from agent.serve import serve
from channels.base import ChannelState
from tests.fakes.discord import FakeDiscord
from tests.fakes.llm import FakeLLM, Turn
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeTelegram


async def until(check: Callable[[], bool], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


def config_for(tmp_path: Path, llm: FakeLLM, tg: FakeTelegram, dc: FakeDiscord, sl: FakeSlack) -> Any:
    return validate({
        "workspace": str(tmp_path / "ws"),
        "llm": {"provider": "anthropic", "model": "claude-test", "api_key": "sk-ant-three-000",
                "base_url": llm.url, "max_retries": 0},
        "channels": [
            {"type": "telegram", "token": tg.token, "base_url": tg.base_url},
            {"type": "discord", "token": dc.token},
            {"type": "slack", "bot_token": sl.bot_token, "app_token": sl.app_token, "base_url": sl.api_url},
        ],
        "owner": {"telegram": ["111"], "discord": ["222"], "slack": ["UOWNER"], "alert_after_minutes": 0.01},
    }, None)


async def test_one_daemon_answers_on_all_three_platforms(tmp_path: Path, fake_llm: FakeLLM,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    fake_llm.responder = lambda rec: Turn(text=f"answer to: {rec.body['messages'][-1]['content'][-1]['text']}")
    async with FakeTelegram() as tg, FakeDiscord() as dc, FakeSlack() as sl:
        dc.redirect(monkeypatch)
        daemon = build_daemon(config_for(tmp_path, fake_llm, tg, dc, sl))
        stop = asyncio.Event()
        serving = asyncio.create_task(serve(daemon, stop=stop, drain_timeout=5))
        await until(lambda: all(ch.state.connected for ch in daemon.channels.values()))
        tg.push_text(111, "from telegram")
        await dc.push_message(42, "from discord", author_id=222)
        await sl.push_message("DOWNER", "from slack", user="UOWNER")
        await until(lambda: bool(tg.calls_of("sendMessage")) and bool(dc.calls_of("POST", "/channels/42/messages"))
                    and bool(sl.calls_of("chat.postMessage")))
        stop.set()
        await serving
    assert tg.calls_of("sendMessage")[0]["text"] == "answer to: from telegram"
    assert dc.calls_of("POST", "/channels/42/messages")[0]["json"]["content"] == "answer to: from discord"
    assert sl.calls_of("chat.postMessage")[0]["text"] == "answer to: from slack"
    assert len(fake_llm.requests) == 3


async def test_owner_hears_on_another_channel_when_one_stays_down(tmp_path: Path, fake_llm: FakeLLM,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    async with FakeTelegram() as tg, FakeDiscord() as dc, FakeSlack() as sl:
        dc.redirect(monkeypatch)
        daemon = build_daemon(config_for(tmp_path, fake_llm, tg, dc, sl))
        daemon.channels["telegram"].state.up()
        daemon.channels["slack"].state = ChannelState()
        daemon.channels["slack"].state.down("connection refused")
        daemon.channels["slack"].state.down_since = time.time() - 120
        await daemon.supervisor.alert_if_down()
        await daemon.supervisor.alert_if_down()  # once per outage, not every check
        alerts = [daemon.runtime.bus.outbound("telegram").get_nowait()]
        assert daemon.runtime.bus.outbound("telegram").empty()
    assert alerts[0].chat_id == "111" and "slack has been down for 2 minutes" in alerts[0].text
    assert "connection refused" in alerts[0].text
