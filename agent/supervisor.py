"""Keeps the chat platforms up: each channel starts on its own, is retried with backoff while the
others serve, and the owner hears about one that stays down (on another channel).

The platform SDKs reconnect a dropped connection themselves; the supervisor restarts a channel only
when starting it failed. It also writes ``<workspace>/state/status.json`` for ``reverie status``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.bus import MessageBus, Outbound
from agent.config import OwnerConfig
from channels.base import Channel

logger = logging.getLogger(__name__)
START_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


class Supervisor:
    def __init__(self, channels: dict[str, Channel], kinds: dict[str, str], owner: OwnerConfig, bus: MessageBus,
                 status_path: Path, extra: Callable[[], dict[str, Any]]) -> None:
        self.channels, self.kinds, self.owner, self.bus = channels, kinds, owner, bus
        self.status_path, self.extra = status_path, extra
        self.started_at = time.time()
        self._alerted: set[str] = set()

    async def keep_up(self, label: str, backoff: tuple[float, ...] = START_BACKOFF) -> None:
        """Start ``label``'s channel, retrying with backoff until it is up."""
        channel = self.channels[label]
        for attempt in range(1_000_000):
            try:
                await channel.start()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # supervision boundary: one platform must not stop the others
                wait = backoff[min(attempt, len(backoff) - 1)]
                # adapters do not know their place in the list; name the key the owner has to fix
                where = f"channels[{list(self.channels).index(label)}]"
                channel.state.down(str(exc).replace("channels[N]", where).replace("channels[]", where))
                self.write_status()
                logger.warning("channel %s did not start (%s); retrying in %.0f s", label, channel.state.last_error,
                               wait)
                await asyncio.sleep(wait)
                continue
            channel.state.up()
            self.write_status()
            logger.info("channel %s connected", label)
            return

    async def watch(self, every: float = 5.0) -> None:
        """Write the status file and alert the owner about long outages, until cancelled."""
        while True:
            self.write_status()
            await self.alert_if_down()
            await asyncio.sleep(every)

    async def alert_if_down(self) -> None:
        limit = self.owner.alert_after_minutes * 60
        for label, channel in self.channels.items():
            down = channel.state.down_since
            if down is None:
                self._alerted.discard(label)
                continue
            if label in self._alerted or time.time() - down < limit:
                continue
            target = self._owner_chat(exclude=label)
            if target is None:
                continue
            minutes = (time.time() - down) / 60
            text = (f"Heads-up: {label} has been down for {minutes:.0f} minutes "
                    f"(last error: {channel.state.last_error}). I keep retrying.")
            await self.bus.publish_outbound(Outbound(target[0], target[1], text, "notice"))
            self._alerted.add(label)

    def _owner_chat(self, exclude: str) -> tuple[str, str] | None:
        """A connected channel other than ``exclude`` on which the owner can be reached."""
        for label, channel in self.channels.items():
            ids = getattr(self.owner, self.kinds[label], [])
            if label != exclude and channel.state.connected and ids:
                return label, ids[0]
        return None

    def write_status(self) -> None:
        data = {"pid": os.getpid(), "started": self.started_at, "updated": time.time(),
                "channels": {label: vars(ch.state) for label, ch in self.channels.items()}, **self.extra()}
        tmp = self.status_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1)
        os.replace(tmp, self.status_path)
