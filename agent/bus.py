"""The message bus: channels put ``Inbound`` on it, the agent puts ``Outbound`` back.

The bus is deliberately dumb: one inbound queue, one outbound queue per channel name.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Literal

SUBAGENT = "subagent"  # the channel name of child-agent turns (agent/subagents.py); no platform may use it
# progress: a subagent's step. A scheduled turn (cron) ends in "nothing" when there is nothing to send, and
# in "failed" instead of "error": cron decides whether to retry or to tell the chat (agent/cron/service.py).
OutKind = Literal["reply", "delta", "tool", "notice", "error", "progress", "nothing", "failed"]


@dataclass(frozen=True)
class Inbound:
    """A message for the agent from a person (or from cron, marked ``scheduled``)."""

    channel: str
    chat_id: str
    sender_id: str
    text: str
    message_id: str | None = None
    thread_id: str | None = None
    attachments: tuple[str, ...] = ()  # paths under <workspace>/inbox/
    images: tuple[str, ...] = ()  # paths of images the model may see
    scheduled: bool = False
    is_owner: bool = False  # the sender is one of owner.<platform> (may use admin commands)
    scope: str | None = None  # overrides the session key (session_scope: user)
    turn_id: str | None = None  # set by the daemon's gateway, which journals the turn before queueing it
    time: float = field(default_factory=time.time)

    @property
    def session_key(self) -> str:
        if self.scope:
            return self.scope
        base = f"{self.channel}:{self.chat_id}"
        return f"{base}:{self.thread_id}" if self.thread_id else base


@dataclass(frozen=True)
class Outbound:
    """Something for a channel to show. One ``reply`` per user turn; the rest is progress."""

    channel: str
    chat_id: str
    text: str
    kind: OutKind = "reply"
    thread_id: str | None = None
    reply_to: str | None = None
    turn_id: str | None = None

    @property
    def session_key(self) -> str:
        base = f"{self.channel}:{self.chat_id}"
        return f"{base}:{self.thread_id}" if self.thread_id else base


class MessageBus:
    def __init__(self) -> None:
        self.inbound: asyncio.Queue[Inbound] = asyncio.Queue()
        self._outbound: dict[str, asyncio.Queue[Outbound]] = {}

    async def publish_inbound(self, msg: Inbound) -> None:
        await self.inbound.put(msg)

    def outbound(self, channel: str) -> asyncio.Queue[Outbound]:
        """The queue a channel reads its deliveries from (created on first use)."""
        return self._outbound.setdefault(channel, asyncio.Queue())

    async def publish_outbound(self, msg: Outbound) -> None:
        await self.outbound(msg.channel).put(msg)
