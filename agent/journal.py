"""The delivery journal: what was asked, what was promised, what arrived. One append-only file,
``<workspace>/state/journal.jsonl``, so a crash at any point loses nothing and repeats nothing.

    journal.turn_started(inbound, turn_id)   # before the turn runs
    iid = journal.intent(outbound)           # before the platform call (a reply also ends its turn)
    journal.receipt(iid, "msg-123")          # after the platform confirmed
    journal.abandoned(iid, "bot was blocked")  # a send that can never succeed

At start, ``pending()`` says which turns never produced a reply (resume them) and which replies were
promised but never confirmed (send them again, marked as delayed). The file is then rewritten with only
those entries, so it stays small.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.bus import Inbound, Outbound

logger = logging.getLogger(__name__)
FINAL = ("reply", "error")
DELAYED = "(Delayed: "  # how every reply that is late because of a restart begins


@dataclass
class Pending:
    turns: list[tuple[str, Inbound]]  # (turn_id, the message that started it)
    intents: list[tuple[str, Outbound]]  # (intent id, what was to be sent)


class Journal:
    def __init__(self, path: Path, compact_at: int = 4_000_000, mask: Callable[[str], str] = str) -> None:
        self.path, self.compact_at, self.mask = path, compact_at, mask  # mask: secrets never reach the disk
        self._failing = False
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # What is still open, once pending() has read the file: the file is rewritten with just this
        # whenever it grows past ``compact_at`` bytes, so a long-running daemon keeps it small.
        self._turns: dict[str, dict[str, Any]] | None = None
        self._intents: dict[str, dict[str, Any]] = {}

    def turn_started(self, msg: Inbound, turn_id: str) -> None:
        masked = dataclasses.replace(msg, text=self.mask(msg.text))
        record = {"op": "turn", "turn": turn_id, "in": dataclasses.asdict(masked)}
        self._write(record)
        if self._turns is not None:
            self._turns[turn_id] = record

    def intent(self, out: Outbound) -> str:
        iid = uuid.uuid4().hex[:16]
        record = {"op": "intent", "id": iid, "out": dataclasses.asdict(out)}
        self._write(record)
        if self._turns is not None:
            self._intents[iid] = record
            if out.kind in FINAL and out.turn_id:
                self._turns.pop(out.turn_id, None)
        return iid

    def finished(self, turn_id: str) -> None:
        """A turn that ended without anything to send (a scheduled turn: nothing to send, or failed)."""
        self._write({"op": "done", "turn": turn_id})
        if self._turns is not None:
            self._turns.pop(turn_id, None)

    def receipt(self, iid: str, platform_id: str | None) -> None:
        self._write({"op": "receipt", "id": iid, "platform_id": platform_id})
        self._closed(iid)

    def abandoned(self, iid: str, reason: str) -> None:
        self._write({"op": "abandoned", "id": iid, "reason": reason[:300]})
        self._closed(iid)

    def _closed(self, iid: str) -> None:
        if self._turns is None:
            return
        self._intents.pop(iid, None)
        try:
            size = self.path.stat().st_size
        except OSError:
            return
        if size > self.compact_at:
            self._rewrite([*self._turns.values(), *self._intents.values()])

    def pending(self) -> Pending:
        """Unfinished work from earlier runs; rewrites the file to hold only that."""
        turns: dict[str, dict[str, Any]] = {}
        intents: dict[str, dict[str, Any]] = {}
        for record in self._records():
            op = record.get("op")
            if op == "turn":
                turns[record["turn"]] = record
            elif op == "intent":
                intents[record["id"]] = record
                out = record["out"]
                if out.get("kind") in FINAL and out.get("turn_id"):
                    turns.pop(out["turn_id"], None)
            elif op == "done":
                turns.pop(str(record.get("turn")), None)
            elif op in ("receipt", "abandoned"):
                intents.pop(record["id"], None)
        self._rewrite([*turns.values(), *intents.values()])
        self._turns, self._intents = dict(turns), dict(intents)
        return Pending([(t, Inbound(**_tuples(r["in"]))) for t, r in turns.items() if _valid(Inbound, r["in"])],
                       [(i, Outbound(**r["out"])) for i, r in intents.items() if _valid(Outbound, r["out"])])

    def _records(self) -> list[dict[str, Any]]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        records = []
        for line in data.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a torn last line: the write it belonged to did not happen
            if isinstance(record, dict):
                records.append(record)
        return records

    def _write(self, record: dict[str, Any]) -> None:
        """Append one record. When the disk refuses (full, read-only), the work goes on without the
        journal's crash safety, and the owner is told in the log: a message is never dropped for it."""
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=list) + "\n").encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as exc:
            if not self._failing:
                logger.error("Could not write to the journal %s (%s): messages are still handled, but one "
                             "interrupted by a crash now would not be resumed. Free some disk space.", self.path,
                             exc.strerror or exc)
            self._failing = True
            return
        self._failing = False

    def _rewrite(self, records: list[dict[str, Any]]) -> None:
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r, ensure_ascii=False, separators=(",", ":"), default=list) + "\n"
                          for r in records)
        os.replace(tmp, self.path)


def _tuples(data: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


def _valid(kind: type, data: Any) -> bool:
    names = {f.name for f in dataclasses.fields(kind)}
    ok = isinstance(data, dict) and set(data) <= names
    if not ok:
        logger.warning("journal: skipping an entry that does not fit %s", kind.__name__)
    return ok
