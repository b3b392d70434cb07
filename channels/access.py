"""Who may talk to the agent. Denied unless allowed.

    access = Access("telegram", channel_config, owner_ids, PairingStore(workspace / "pairing"))
    decision = access.check(Who(sender="42", chat="42", is_group=False, addressed=True))
    if not decision.allowed and decision.reply: send decision.reply   # a stranger's pairing code

A direct message from someone not allowed gets, once, an 8-character pairing code (cryptographically
random, valid for an hour). The owner approves it with ``reverie pair approve CODE``; approvals live
in ``<workspace>/pairing/pairing.json``, never in the config. Five wrong codes within an hour lock
approval for the rest of that hour. In groups the chat must be allowed (or the sender be the owner)
and ``group_policy`` decides: ``mention`` (addressed: mentioned or replied to), ``open`` or ``deny``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config import ChannelBase
from agent.errors import ReverieError

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I to misread
CODE_LENGTH = 8
CODE_TTL = 3600.0
MAX_FAILURES = 5


class PairingError(ReverieError):
    """An approval that cannot be done (unknown or expired code, too many wrong codes)."""


@dataclass(frozen=True)
class Who:
    sender: str
    chat: str
    is_group: bool
    addressed: bool = True  # in a group: the bot was mentioned or replied to
    name: str = ""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reply: str | None = None  # text to send back when not allowed (a pairing code), else silence
    owner: bool = False


class PairingStore:
    """Pending codes and approved senders in one JSON file, shared by the daemon and the CLI."""

    def __init__(self, root: Path) -> None:
        self.path = root / "pairing.json"
        self._cache: tuple[float, dict[str, Any]] | None = None

    def is_approved(self, channel: str, sender: str) -> bool:
        return sender in self._read().get("approved", {}).get(channel, {})

    def request(self, channel: str, sender: str, chat: str, name: str = "") -> str | None:
        """A new code for this sender, or None if one is still pending (the stranger is told once)."""
        with self._locked() as data:
            now = time.time()
            pending = {c: p for c, p in data.get("pending", {}).items() if p["expires"] > now}
            if any(p["channel"] == channel and p["sender"] == sender for p in pending.values()):
                data["pending"] = pending
                return None
            code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
            pending[code] = {"channel": channel, "sender": sender, "chat": chat, "name": name,
                             "expires": now + CODE_TTL}
            data["pending"] = pending
            return code

    def approve(self, code: str) -> dict[str, Any]:
        code = code.strip().upper()
        with self._locked() as data:
            now = time.time()
            failures = [t for t in data.get("failures", []) if t > now - CODE_TTL]
            if len(failures) >= MAX_FAILURES:
                raise PairingError("Too many wrong pairing codes in the last hour; approval is locked. Try again "
                                   "later with the code the person was sent.")
            entry = data.get("pending", {}).pop(code, None)
            if entry is None or entry["expires"] <= now:
                data["failures"] = [*failures, now]
                raise PairingError(f"No pending pairing code {code!r} (codes expire after an hour). Ask the person "
                                   "to message the bot again for a new one; `reverie pair list` shows pending codes.")
            data.setdefault("approved", {}).setdefault(entry["channel"], {})[entry["sender"]] = {
                "since": now, "name": entry.get("name", ""), "chat": entry["chat"]}
            data["failures"] = failures
            return dict(entry)

    def revoke(self, channel: str, sender: str) -> bool:
        with self._locked() as data:
            return data.get("approved", {}).get(channel, {}).pop(sender, None) is not None

    def snapshot(self) -> dict[str, Any]:
        return self._read()

    def _read(self) -> dict[str, Any]:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return {}
        if self._cache is None or self._cache[0] != mtime:
            try:
                self._cache = (mtime, json.loads(self.path.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                return {}
        return self._cache[1]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """Read-modify-write under an exclusive lock, replaced atomically (the CLI writes too)."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = json.loads(self.path.read_text(encoding="utf-8")) if self.path.exists() else {}
            except ValueError:
                data = {}
            yield data
            tmp = self.path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=1)
            os.replace(tmp, self.path)
            self._cache = None


class Access:
    def __init__(self, channel: str, config: ChannelBase, owners: list[str], pairing: PairingStore) -> None:
        self.channel, self.config, self.owners, self.pairing = channel, config, set(owners), pairing

    def is_owner(self, sender: str) -> bool:
        return sender in self.owners

    def check(self, who: Who) -> Decision:
        owner = self.is_owner(who.sender)
        if who.is_group:
            chat_ok = who.chat in self.config.allow_chats or owner
            policy = self.config.group_policy
            ok = chat_ok and policy != "deny" and (policy == "open" or who.addressed)
            return Decision(ok, None, owner)
        if owner or who.sender in self.config.allow_from or self.pairing.is_approved(self.channel, who.sender):
            return Decision(True, None, owner)
        code = self.pairing.request(self.channel, who.sender, who.chat, who.name)
        if code is None:
            return Decision(False)
        return Decision(False, f"I don't know you yet. Ask my owner to approve you with this code: {code}\n"
                               f"(They run: reverie pair approve {code}. The code is valid for an hour.)")
