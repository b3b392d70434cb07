"""Telegram updates handled concurrently across chats and in order within each chat, so one slow
download or paced reply in one chat never holds up the others. Imported only by the Telegram adapter."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor

logger = logging.getLogger(__name__)


class PerChatOrder(BaseUpdateProcessor):
    def __init__(self, max_concurrent_updates: int = 64) -> None:
        super().__init__(max_concurrent_updates)
        self._locks: dict[object, asyncio.Lock] = {}
        self._users: dict[object, int] = {}

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        chat = getattr(getattr(update, "effective_chat", None), "id", None)
        lock = self._locks.setdefault(chat, asyncio.Lock())
        self._users[chat] = self._users.get(chat, 0) + 1
        try:
            async with lock:
                await coroutine
        finally:
            self._users[chat] -= 1
            if not self._users[chat]:  # nobody holds or waits for it: forget the chat
                del self._users[chat], self._locks[chat]

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None


def readable_updates(payload: bytes) -> bytes:
    """A getUpdates answer with each update python-telegram-bot cannot parse cut down to its
    ``update_id``: PTB fails the whole batch on one bad update and fetches the same batch again, forever."""
    try:
        data = json.loads(payload)
        updates = data["result"]
    except (ValueError, KeyError, TypeError):
        return payload  # not a batch of updates: PTB reports it as it would
    if not isinstance(updates, list):
        return payload
    changed = False
    for index, update in enumerate(updates):
        try:
            Update.de_json(update, None)
        except Exception:  # whatever PTB's parser raises, the update is skipped, not the channel
            logger.warning("Skipped a Telegram update that cannot be read: %.300r", update)
            updates[index] = {"update_id": update.get("update_id") if isinstance(update, dict) else None}
            changed = True
    return json.dumps(data).encode() if changed else payload
