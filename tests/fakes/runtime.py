"""Build a real runtime against the LLM stand-in, and talk to it through the bus."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from agent.bus import Inbound, Outbound
from agent.config import Config
from agent.config_file import validate
from agent.daemon import Runtime, build_runtime
from tests.fakes.llm import FakeLLM


def make_config(tmp_path: Path, fake: FakeLLM, api: str = "anthropic", **sections: Any) -> Config:
    llm: dict[str, Any] = {"provider": "anthropic", "model": "claude-test", "api_key": "sk-ant-test-key-000111",
                           "base_url": fake.url, "max_retries": 0, "stream_retries": 1}
    if api == "openai":
        llm.update(provider="openai_compatible", model="gpt-test", base_url=fake.openai_url,
                   api_key="sk-openai-test-key-000111")
    llm.update(sections.pop("llm", {}))
    return validate({"workspace": str(tmp_path / "ws"), "llm": llm, **sections}, None)


class Chat:
    """A test's view of the runtime: send text as one chat, collect what comes back."""

    def __init__(self, runtime: Runtime, channel: str = "test") -> None:
        self.runtime = runtime
        self.channel = channel
        self.out: list[Outbound] = []

    async def send(self, text: str, chat: str = "c1", **kw: Any) -> None:
        await self.runtime.bus.publish_inbound(Inbound(self.channel, chat, kw.pop("sender", "u1"), text, **kw))

    async def final(self, chat: str = "c1", timeout: float = 10.0) -> Outbound:
        """The next reply or error for ``chat``; everything seen on the way is kept in ``out``."""
        queue = self.runtime.bus.outbound(self.channel)
        async with asyncio.timeout(timeout):
            while True:
                item = await queue.get()
                self.out.append(item)
                if item.chat_id == chat and item.kind in ("reply", "error"):
                    return item

    async def ask(self, text: str, chat: str = "c1", timeout: float = 10.0, **kw: Any) -> Outbound:
        await self.send(text, chat, **kw)
        return await self.final(chat, timeout)

    def kinds(self, kind: str) -> list[str]:
        return [o.text for o in self.out if o.kind == kind]


def runtime_for(tmp_path: Path, fake: FakeLLM, api: str = "anthropic", **sections: Any) -> Runtime:
    return build_runtime(make_config(tmp_path, fake, api, **sections))
