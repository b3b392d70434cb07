"""Between the bus and the chat platforms, outbound: journaled, retried, in order per chat.

Each final message (reply, error, notice) is written to the journal as an intent before the platform
is called and gets a receipt after the platform confirmed it. A failed send is retried with backoff;
what never got a receipt is sent again at the next start, marked as delayed. Streamed text and tool
lines are progress for the terminal and are not sent to chat platforms.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable

from agent.bus import MessageBus, Outbound
from agent.journal import DELAYED, Journal
from channels.base import Channel, DeliveryError

logger = logging.getLogger(__name__)
SENT = ("reply", "error", "notice")
BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
RESENT = f"{DELAYED}this could not be delivered before reverie restarted.)"


class Delivery:
    def __init__(self, journal: Journal, channels: dict[str, Channel], *,
                 backoff: tuple[float, ...] = BACKOFF) -> None:
        self.journal, self.channels, self.backoff = journal, channels, backoff
        self._chat_locks: dict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)
        self._tasks: set[asyncio.Task[None]] = set()
        # Told how each final message ended: "sent" (with the platform's id), "abandoned", or "nothing".
        self.observers: list[Callable[[Outbound, str, str | None], None]] = []

    async def pump(self, bus: MessageBus, label: str) -> None:
        """Forward ``label``'s outbound queue to its channel until cancelled."""
        queue = bus.outbound(label)
        while True:
            out = await queue.get()
            if out.kind in SENT:
                self.submit(self.journal.intent(out), out)
            elif out.kind in ("nothing", "failed"):  # a scheduled turn that ends without a message
                self.journal.finished(out.turn_id or "")
                self._tell(out, out.kind, None)

    def submit(self, iid: str, out: Outbound) -> None:
        task = asyncio.create_task(self._deliver(iid, out), name=f"deliver {iid}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def redeliver(self, intents: list[tuple[str, Outbound]]) -> None:
        """Send what an earlier run promised but never confirmed, marked as delayed."""
        for iid, out in intents:
            text = out.text if out.text.startswith(DELAYED) else f"{RESENT}\n\n{out.text}"
            self.submit(iid, Outbound(out.channel, out.chat_id, text, out.kind, out.thread_id, out.reply_to,
                                      out.turn_id))

    async def flush(self, timeout: float) -> int:  # noqa: ASYNC109 (a deadline for the whole flush)
        """Wait for deliveries in progress; returns how many were still pending at the deadline."""
        if not self._tasks:
            return 0
        _done, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()  # the intent stays in the journal: the next start sends it
        await asyncio.gather(*pending, return_exceptions=True)
        return len(pending)

    async def _deliver(self, iid: str, out: Outbound) -> None:
        channel = self.channels.get(out.channel)
        if channel is None:
            logger.error("no channel %r for a %s to %s; dropping it", out.channel, out.kind, out.chat_id)
            self.journal.abandoned(iid, f"no channel {out.channel}")
            self._tell(out, "abandoned", None)
            return
        key = (out.channel, out.chat_id)
        try:
            async with self._chat_locks[key]:
                await self._attempts(iid, out, channel)
        finally:
            lock = self._chat_locks.get(key)
            if lock is not None and not lock.locked():
                del self._chat_locks[key]  # no one else waits for this chat

    async def _attempts(self, iid: str, out: Outbound, channel: Channel) -> None:
        """Until the platform confirms it. Only a failure that can never succeed gives up: an outage of
        any length is waited out (and a stop leaves the intent for the next start)."""
        attempt = 0
        while True:
            wait = self.backoff[min(attempt, len(self.backoff) - 1)]
            attempt += 1
            try:
                platform_id = await channel.send(out)
            except DeliveryError as exc:
                if not exc.retryable:
                    logger.error("giving up on a %s to %s/%s: %s", out.kind, out.channel, out.chat_id, exc)
                    self.journal.abandoned(iid, str(exc))
                    self._tell(out, "abandoned", None)
                    return
                wait = max(exc.retry_after or 0.0, wait)
                logger.warning("send %d to %s/%s failed (%s); retrying in %.0f s", attempt, out.channel,
                               out.chat_id, exc, wait)
            except Exception:  # supervision boundary: a bug in one adapter must not stop delivery
                logger.exception("unexpected failure sending to %s/%s (attempt %d); retrying in %.0f s",
                                 out.channel, out.chat_id, attempt, wait)
            else:
                self.journal.receipt(iid, platform_id)
                self._tell(out, "sent", platform_id)
                return
            await asyncio.sleep(wait)

    def _tell(self, out: Outbound, status: str, platform_id: str | None) -> None:
        for observer in self.observers:
            try:
                observer(out, status, platform_id)
            except Exception:  # an observer's bug must not stop delivery
                logger.exception("a delivery observer failed")
