"""Between the chat platforms and the bus, inbound: every platform message once, admin commands for
the owner, and nothing dropped while the daemon drains.

    gateway = Gateway(bus, journal, seen, pairing, status=lambda: "...")
    ctx = ChannelContext("telegram", gateway.publish, access, inbox)   # what each adapter gets
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable

from agent.bus import Inbound, MessageBus, Outbound
from agent.journal import Journal
from agent.logs import MASK
from channels.access import PairingError, PairingStore
from channels.dedupe import SeenStore

logger = logging.getLogger(__name__)
ADMIN = ("/approve", "/revoke", "/status")


class Gateway:
    def __init__(self, bus: MessageBus, journal: Journal, seen: SeenStore, pairing: PairingStore,
                 status: Callable[[], str]) -> None:
        self.bus, self.journal, self.seen, self.pairing, self.status = bus, journal, seen, pairing, status
        self.draining = False

    async def publish(self, msg: Inbound) -> bool:
        """Hand a platform message to the agent; False if it was already handled (a redelivery).

        A turn is journaled before its message is marked seen: a crash in between leaves a journaled
        turn (resumed at start, which marks it seen then), never a message marked seen and lost.
        """
        if self.seen.seen(msg.channel, msg.chat_id, msg.message_id):
            logger.info("skipping a redelivered message %s in %s", msg.message_id, msg.session_key)
            return False
        word = msg.text.strip().split(maxsplit=1)[0].lower() if msg.text.strip() else ""
        if word in ADMIN or word == "/stop":
            self.seen.add(msg.channel, msg.chat_id, msg.message_id)  # acted on at once, never replayed
        if word in ADMIN:
            await self._admin(msg, word)
        elif word == "/stop":  # acts on the running turn at once; never replayed after a restart
            if self.draining:
                await self._reply(msg, "reverie is restarting; a running answer finishes or resumes shortly.")
            else:
                await self.bus.publish_inbound(msg)
        else:
            # Journaled as soon as it is seen (and before any await), so a crash or a drain that runs out
            # of time while it waits in its chat's queue resumes it at the next start.
            msg = dataclasses.replace(msg, turn_id=uuid.uuid4().hex[:12])
            self.journal.turn_started(msg, msg.turn_id or "")
            self.seen.add(msg.channel, msg.chat_id, msg.message_id)
            if not self.draining:
                await self.bus.publish_inbound(msg)
        return True

    async def _admin(self, msg: Inbound, word: str) -> None:
        if not msg.is_owner:
            text = f"Only the owner can use {word}."
        elif word == "/status":
            text = self.status()
        else:
            text = self._pairing(msg, word)
        await self._reply(msg, text)

    async def _reply(self, msg: Inbound, text: str) -> None:
        await self.bus.publish_outbound(Outbound(msg.channel, msg.chat_id, MASK(text), "reply", msg.thread_id,
                                                 msg.message_id, uuid.uuid4().hex[:12]))

    def _pairing(self, msg: Inbound, word: str) -> str:
        args = msg.text.split()[1:]
        if word == "/approve":
            if len(args) != 1:
                return "Usage: /approve CODE"
            try:
                entry = self.pairing.approve(args[0])
            except PairingError as exc:
                return str(exc)
            return f"Approved {entry.get('name') or entry['sender']} on {entry['channel']}."
        if len(args) != 2:
            return "Usage: /revoke CHANNEL USER_ID"
        done = self.pairing.revoke(args[0], args[1])
        return f"Revoked {args[1]} on {args[0]}." if done else f"{args[1]} was not approved on {args[0]}."
