"""Each platform message is processed once: a persisted table of seen ids with a time-to-live.

    seen = SeenStore(workspace / "state" / "seen.jsonl", ttl=7 * 86400)
    if seen.first_time("telegram", "42", "1001"): ...   # False for a redelivery, also after a restart
    if not seen.seen(...): journal(...); seen.add(...)   # the same in two steps, around a journal write

Append-only lines; expired entries are dropped when the file is rewritten at start. At most
``max_entries`` (the newest) are kept, about 115 bytes of memory each: a redelivery comes within
minutes (a crash before the platform was told, a retry), never 10,000 messages later.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

logger = logging.getLogger(__name__)


class SeenStore:
    def __init__(self, path: Path, ttl: float = 7 * 86400, max_entries: int = 10_000) -> None:
        self.path, self.ttl, self.max_entries = path, ttl, max_entries
        self._seen: dict[str, float] = {}
        self._load()

    def first_time(self, channel: str, chat: str, message_id: str | None) -> bool:
        """Record the message; False if it was seen before. Messages without an id always pass."""
        if self.seen(channel, chat, message_id):
            return False
        self.add(channel, chat, message_id)
        return True

    def seen(self, channel: str, chat: str, message_id: str | None) -> bool:
        """Whether this message was recorded (and not expired). Messages without an id never were."""
        when = self._seen.get(f"{channel}\x1f{chat}\x1f{message_id}") if message_id else None
        return when is not None and when > time.time() - self.ttl

    def add(self, channel: str, chat: str, message_id: str | None) -> None:
        """Record the message (nothing for a message without an id)."""
        if not message_id:
            return
        key = f"{channel}\x1f{chat}\x1f{message_id}"
        now = time.time()
        self._seen[key] = now
        try:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps([key, round(now, 3)]) + "\n")
        except OSError as exc:  # a full disk: remembered in memory; only a restart could repeat it
            logger.warning("Could not record a seen message in %s: %s", self.path, exc.strerror or exc)
        if len(self._seen) > self.max_entries:
            self._rewrite()

    def _load(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        cutoff = time.time() - self.ttl
        try:
            with open(self.path, encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    try:
                        key, when = json.loads(line)
                    except (ValueError, TypeError):
                        continue  # a torn last line after a crash
                    if isinstance(key, str) and isinstance(when, int | float) and when > cutoff:
                        self._seen[key] = float(when)
        except FileNotFoundError:
            pass
        self._rewrite()

    def _rewrite(self) -> None:
        """Keep the newest nine tenths of the entries (room to grow before the next rewrite) and write the
        file anew with them. The entries kept are the objects already held: reading them back from the
        file made new ones, and raised the daemon's RSS by 2.5 MB at the first rewrite in bench/soak.py."""
        keep = self.max_entries * 9 // 10
        if len(self._seen) > keep:
            newest = sorted(self._seen, key=self._seen.__getitem__)[-keep:]
            self._seen = {key: self._seen[key] for key in newest}
        tmp = self.path.with_suffix(".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.writelines(json.dumps([k, round(v, 3)]) + "\n" for k, v in self._seen.items())
            os.replace(tmp, self.path)
        except OSError as exc:  # the old file stays, only longer; the table in memory is right
            logger.warning("Could not rewrite %s: %s", self.path, exc.strerror or exc)
