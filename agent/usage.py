"""Token usage, cost estimates and the daily budget, kept in ``<workspace>/usage.jsonl``.

    log = UsageLog(workspace / "usage.jsonl", config.llm)
    log.check_budget()                  # raises BudgetExceeded before a call that must not be made
    log.record("claude-sonnet-4-6", "anthropic", usage, session="telegram:42")

Other processes (``reverie chat`` next to a running daemon) append to the same file; the log reads only
the bytes added since it last looked, so checking the budget stays cheap however long the file grows.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.config import LLMConfig, Price
from agent.errors import BudgetExceeded
from agent.types import Usage

logger = logging.getLogger(__name__)

# USD per million tokens (input, output); estimates, overridable with llm.prices. Longest prefix wins.
PRICES: dict[str, tuple[float, float]] = {
    "claude-opus-4-0": (15, 75), "claude-opus-4-1": (15, 75), "claude-opus-4": (5, 25),
    "claude-sonnet-4": (3, 15), "claude-3-7-sonnet": (3, 15), "claude-haiku-4": (1, 5),
    "claude-3-5-haiku": (0.8, 4), "gpt-4.1-nano": (0.1, 0.4), "gpt-4.1-mini": (0.4, 1.6), "gpt-4.1": (2, 8),
    "gpt-4o-mini": (0.15, 0.6), "gpt-4o": (2.5, 10), "gpt-5-nano": (0.05, 0.4), "gpt-5-mini": (0.25, 2),
    "gpt-5": (1.25, 10), "o4-mini": (1.1, 4.4), "deepseek-chat": (0.28, 0.42), "deepseek-reasoner": (0.28, 0.42),
}


def price_for(model: str, overrides: dict[str, Price]) -> Price | None:
    if model in overrides:
        return overrides[model]
    base = model.rsplit("/", 1)[-1]  # "anthropic/claude-sonnet-4.6" on OpenRouter
    for prefix in sorted(PRICES, key=len, reverse=True):
        if base.startswith(prefix):
            inp, out = PRICES[prefix]
            cached = 0.1 if base.startswith(("claude", "deepseek")) else 0.25
            write = 1.25 if base.startswith("claude") else 1.0
            return Price(input=inp, output=out, cache_read=inp * cached, cache_write=inp * write)
    return None


def cost_of(usage: Usage, price: Price | None) -> float | None:
    if price is None:
        return None
    read = price.input if price.cache_read is None else price.cache_read
    write = price.input if price.cache_write is None else price.cache_write
    return (usage.input * price.input + usage.output * price.output + usage.cache_read * read
            + usage.cache_write * write) / 1_000_000


@dataclass
class Totals:
    usage: Usage = field(default_factory=Usage)
    cost: float = 0.0
    calls: int = 0
    unpriced: bool = False


class UsageLog:
    def __init__(self, path: Path, llm: LLMConfig) -> None:
        self.path = path
        self.llm = llm
        self._offset = 0
        self._day = ""
        self._today = Totals()
        self.calls: Counter[str] = Counter()  # model calls per session since start (cron: was a call made?)

    def record(self, model: str, provider: str, usage: Usage, session: str = "", served_by: str = "") -> float | None:
        """Append one call; ``model`` is the configured name, ``served_by`` what the API said it used."""
        self.calls[session] += 1
        price = price_for(model, self.llm.prices) or (price_for(served_by, self.llm.prices) if served_by else None)
        cost = cost_of(usage, price)
        line = {"time": round(time.time(), 3), "model": model, "provider": provider, "input": usage.input,
                "output": usage.output, "cache_read": usage.cache_read, "cache_write": usage.cache_write,
                "cost_usd": None if cost is None else round(cost, 6), "session": session}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(line, separators=(",", ":")) + "\n")
        except OSError as exc:  # a full disk must not turn a finished answer into an error
            logger.warning("Could not record usage in %s: %s", self.path, exc.strerror or exc)
        return cost

    def today(self) -> Totals:
        self._refresh()
        return self._today

    def check_budget(self) -> None:
        usd, tokens = self.llm.daily_budget_usd, self.llm.daily_token_budget
        if usd is None and tokens is None:
            return
        spent = self.today()
        if usd is not None and spent.cost >= usd:
            raise BudgetExceeded(f"Today's budget of ${usd:.2f} is spent (${spent.cost:.2f} so far), so no "
                                 "model call was made. Raise llm.daily_budget_usd or wait until tomorrow.")
        if tokens is not None and spent.usage.total >= tokens:
            raise BudgetExceeded(f"Today's budget of {tokens:,} tokens is spent ({spent.usage.total:,} so far), "
                                 "so no model call was made. Raise llm.daily_token_budget or wait until tomorrow.")

    def _refresh(self) -> None:
        now = datetime.now()
        day = now.strftime("%Y-%m-%d")
        if day != self._day:
            midnight = datetime(now.year, now.month, now.day).timestamp()
            self._day, self._today, self._offset = day, Totals(), first_line_at(self.path, midnight)
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except FileNotFoundError:
            return
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        for row in _rows(complete):
            if datetime.fromtimestamp(row["time"]).strftime("%Y-%m-%d") == day:
                _add(self._today, row)

    def summary(self, since: float) -> dict[str, Totals]:
        """Totals per model for records at or after ``since`` (a unix time); reads the whole file."""
        out: dict[str, Totals] = defaultdict(Totals)
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        for row in _rows(data):
            if row["time"] >= since:
                _add(out[str(row.get("model", "?"))], row)
        return dict(out)


def first_line_at(path: Path, since: float) -> int:
    """Byte offset of the first record at or after ``since``, found by bisection (records are appended
    in time order), so the first budget check of a day reads a few lines, not the whole log."""
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        return 0
    with fh:
        size = fh.seek(0, os.SEEK_END)

        def line_at(pos: int) -> tuple[int, float | None]:
            """Start and time of the first whole line starting at or after ``pos``."""
            fh.seek(max(pos - 1, 0))
            if pos:
                fh.readline()  # finishes the line that ``pos - 1`` is in (just its newline at a line start)
            start = fh.tell()
            rows = _rows(fh.readline())
            return start, (float(rows[0]["time"]) if rows else None)

        low, high = 0, size
        while low < high:
            mid = (low + high) // 2
            start, when = line_at(mid)
            if start >= size or (when is not None and when >= since):
                high = mid
            else:
                low = mid + 1
        return line_at(low)[0]


def _rows(data: bytes) -> list[dict[str, Any]]:
    rows = []
    for line in data.splitlines():
        try:
            row = json.loads(line)
            float(row["time"])
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _add(totals: Totals, row: dict[str, Any]) -> None:
    totals.usage = totals.usage + Usage(int(row.get("input", 0)), int(row.get("output", 0)),
                                        int(row.get("cache_read", 0)), int(row.get("cache_write", 0)))
    totals.calls += 1
    if row.get("cost_usd") is None:
        totals.unpriced = True
    else:
        totals.cost += float(row["cost_usd"])
