"""What every chat-platform adapter shares: its context, its state, and how long replies are split.

An adapter is a transport (STYLE.md, principle 3):

    channel = TelegramAdapter(config, ctx)
    await channel.start()                 # connect; ChannelError if the platform refuses
    message_id = await channel.send(out)  # deliver one Outbound; ChannelError(retryable=...) on failure
    await channel.stop()

It turns platform events into ``Inbound`` and hands them to ``ctx.publish`` after checking
``ctx.access``; the daemon does the rest (dedupe, delivery retries, the outbox).
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from agent.bus import Inbound, Outbound
from agent.errors import ChannelError
from channels.access import Access


class DeliveryError(ChannelError):
    """A send failed. ``retryable``: the same send may succeed later (network, 5xx, rate limit)."""

    def __init__(self, message: str, *, retryable: bool = True, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass
class ChannelState:
    connected: bool = False
    last_message: float | None = None  # unix time of the last inbound message
    last_error: str | None = None
    down_since: float | None = None

    def up(self) -> None:
        self.connected, self.down_since = True, None

    def down(self, error: str) -> None:
        self.connected, self.last_error = False, error
        self.down_since = self.down_since or time.time()


@dataclass
class ChannelContext:
    label: str  # the channel's name in the config (e.g. "telegram"); Inbound.channel carries it
    publish: Callable[[Inbound], Awaitable[bool]]  # False when the message was seen before (deduped)
    access: Access
    inbox: Path  # <workspace>/inbox: where received files are saved
    state: ChannelState = field(default_factory=ChannelState)


class Channel(Protocol):
    name: str
    state: ChannelState

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, out: Outbound) -> str | None: ...


def scope_key(scope: str, channel: str, sender: str) -> str | None:
    """The session key for ``session_scope``; None keeps the default ``channel:chat[:thread]``, in which
    forum topics and threads are already sessions of their own (``chat`` and ``thread`` alike)."""
    return f"{channel}:user:{sender}" if scope == "user" else None


_FENCE = re.compile(r"^(```|~~~)", re.MULTILINE)


def split_text(text: str, limit: int) -> list[str]:
    """Split ``text`` into parts of at most ``limit`` characters, preferring paragraph breaks, then
    line breaks, then spaces. A code block cut in two is closed at the end of one part and reopened
    at the start of the next, so each part renders on its own."""
    parts: list[str] = []
    rest = text.strip("\n")
    opener = ""
    while rest:
        budget = limit - len(opener) - 4  # room to reopen and close a fence
        if len(opener) + len(rest) <= limit:
            parts.append(opener + rest)
            break
        cut = _cut_point(rest, budget)
        piece, rest = rest[:cut].rstrip(), rest[cut:].lstrip("\n")
        chunk = opener + piece
        fence = _open_fence(chunk)
        if fence is not None:
            chunk += "\n```"
            opener = fence + "\n"
        else:
            opener = ""
        parts.append(chunk)
    return [p for p in parts if p.strip()] or [""]


def _cut_point(text: str, budget: int) -> int:
    window = text[:budget]
    for sep in ("\n\n", "\n", " "):
        at = window.rfind(sep)
        if at > budget // 3:
            return at + len(sep)
    return max(budget, 1)


def _open_fence(chunk: str) -> str | None:
    """The opening fence line (e.g. "```python") if ``chunk`` ends inside a code block."""
    fences = [m for m in _FENCE.finditer(chunk)]
    if len(fences) % 2 == 0:
        return None
    line_end = chunk.find("\n", fences[-1].start())
    return chunk[fences[-1].start(): line_end if line_end != -1 else len(chunk)]
