"""Soak: ``reverie start`` as a subprocess for minutes on end, under the fault mix of tests/proof/test_faults.py.

    python bench/soak.py                                   # 10 minutes, 200 chats, 20,000 messages
    python bench/soak.py --minutes 1 --chats 50 --messages 1000   # a trial

Messages go out at an even rate from random chats, each with a unique tag ``mNNNNN``. The LLM stand-in
answers "reply to mNNNNN", or fails per the fault mix: 429 on 5% of calls and 529 on 5%, a stream dropped
midway on 5%, a stall beyond ``llm.timeout`` on 2%. The Telegram stand-in fails about 5% of sends with a
500 and, once a minute, answers a burst of five sends with 429 (retry_after 0.5 s).

Prints a Markdown table: messages lost and duplicated, RSS and open file descriptors of the daemon at the
start and at the end (last reply + 10 s), and the latency the daemon adds. The start is after one message
from a chat outside the traffic was answered, plus 30 s idle; RSS connected but before that message is
printed too (the first answer builds the SDK's response types, about 2.5 MB, once).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import signal
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402
from aiohttp import web  # noqa: E402

from bench.channels import rss_mb, start_daemon, wait_connected  # noqa: E402
from tests.fakes.llm import Delay, Fail, FakeLLM, Recorded, Step, StreamError, Turn  # noqa: E402
from tests.fakes.llm_wire import Wire  # noqa: E402
from tests.fakes.telegram import FakeTelegram  # noqa: E402

FIRST_CHAT = 5000
TAG = re.compile(r"\bm\d{5}\b")
SETTLE = 10.0


class _Count:
    """Stands in for FakeLLM.requests: counts requests without keeping 20,000 request bodies."""

    def __init__(self) -> None:
        self.n = 0

    def append(self, _item: Any) -> None:
        self.n += 1

    def __len__(self) -> int:
        return self.n


@dataclass
class Call:
    tag: str
    kind: str  # ok | 429 | 529 | drop | stall
    started: float
    took: float = 0.0  # how long the stand-in spent answering


class SoakLLM(FakeLLM):
    """FakeLLM with the fault mix; remembers each call per tag and how long the stand-in took to answer."""

    def __init__(self, rng: random.Random) -> None:
        super().__init__()
        self.requests = _Count()  # type: ignore[assignment]
        self.rng = rng
        self.calls: dict[str, list[Call]] = defaultdict(list)
        self._current: Call | None = None
        self.responder = self._respond

    def _respond(self, rec: Recorded) -> Step:
        messages = rec.body.get("messages") or [{}]
        found = TAG.findall(str(messages[-1].get("content")))
        tag = found[-1] if found else "?"
        roll = self.rng.random()
        if roll < 0.05:
            kind, step = "429", Fail(429, "rate_limit_error", "Rate limited")
        elif roll < 0.10:
            kind, step = "529", Fail(529, "overloaded_error", "Overloaded")
        elif roll < 0.15:
            kind, step = "drop", StreamError(partial="Partial", drop=True)
        elif roll < 0.17:
            kind, step = "stall", Delay(5.0, Turn(text="too late"))  # llm.timeout is 2 s
        else:
            kind, step = "ok", Turn(text=f"reply to {tag}")
        self._current = Call(tag, kind, time.monotonic())
        self.calls[tag].append(self._current)
        return step

    async def _play(self, step: Step, wire: Wire, stream: bool, ex: Any) -> bool:
        call, self._current = self._current, None  # set by _respond just before, with no await between
        try:
            return await super()._play(step, wire, stream, ex)
        finally:
            if call is not None:
                call.took = time.monotonic() - call.started


class SoakTelegram(FakeTelegram):
    """FakeTelegram that timestamps every sendMessage it accepts or fails."""

    def __init__(self) -> None:
        super().__init__()
        self.accepted: list[tuple[float, int, str]] = []  # (when, chat, text)
        self.failed: list[tuple[float, int]] = []

    async def _api(self, request: web.Request) -> web.Response:
        response = await super()._api(request)
        if request.match_info["method"].lower() == "sendmessage":
            # a sendMessage is recorded and answered with no await in between: calls[-1] is this one
            # (not so for getUpdates, which long-polls)
            method, params = self.calls[-1]
            assert method.lower() == "sendmessage", method
            chat = int(params.get("chat_id", 0))
            if response.status == 200:
                self.accepted.append((time.monotonic(), chat, str(params.get("text"))))
            else:
                self.failed.append((time.monotonic(), chat))
        return response

    def backlog(self) -> int:
        return len(self._updates)


def write_config(tmp: Path, llm: FakeLLM, tg: FakeTelegram, chats: int) -> Path:
    data: dict[str, Any] = {
        "workspace": str(tmp / "ws"),
        "llm": {"provider": "anthropic", "model": "claude-bench", "api_key": "sk-ant-soak-0000",
                "base_url": llm.url, "stream_retries": 2, "timeout": 2},  # max_retries: the default, 2
        "agent": {"max_concurrent_turns": 256},
        "channels": [{"type": "telegram", "token": tg.token, "base_url": tg.base_url,
                      "allow_from": [str(FIRST_CHAT + i) for i in range(chats + 1)]}],
        "memory": {"dream": {"enabled": False}},
        "cron": {"enabled": False},
        "logging": {"level": "WARNING"},
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(len(ordered) * q + 0.5) - 1))]


@dataclass
class Run:
    chats: int
    messages: int
    minutes: float
    pushed: dict[str, tuple[float, int]] = field(default_factory=dict)  # tag -> (when, chat)
    by_chat: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))
    samples: list[tuple[float, ...]] = field(default_factory=list)  # (t, rss MB, fds, backlog, cpu %s, sends)
    idle_rss: float = 0.0  # connected and idle, before any message
    rss: tuple[float, float] = (0.0, 0.0)  # after the first reply and idle; at the end
    fds: tuple[int, int] = (0, 0)
    traffic: tuple[float, float] = (0.0, 0.0)  # first push, last push
    last_reply: float = 0.0
    wall: float = 0.0
    returncode: int | None = None


async def soak(args: argparse.Namespace) -> tuple[Run, SoakLLM, SoakTelegram]:
    rng = random.Random(args.seed)
    run = Run(args.chats, args.messages, args.minutes)
    began = time.monotonic()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        async with SoakLLM(random.Random(args.seed + 1)) as llm, SoakTelegram() as tg:
            proc = await start_daemon(write_config(tmp, llm, tg, args.chats), tmp)
            try:
                await wait_connected(tmp, ["telegram"], timeout=60)
                await asyncio.sleep(args.warm_up)
                run.idle_rss = rss_mb(proc.pid)
                await _first_reply(tg, FIRST_CHAT + args.chats)
                await asyncio.sleep(args.warm_up)
                start_rss, start_fds = rss_mb(proc.pid), fds(proc.pid)
                sampler = asyncio.create_task(_sample(proc.pid, tg, run))
                await _traffic(tg, rng, run, args.minutes * 60)
                await _ended(tg, run, limit=max(120.0, args.minutes * 30))
                await asyncio.sleep(SETTLE)  # room for a late duplicate, and for the daemon to settle
                end_rss, end_fds = rss_mb(proc.pid), fds(proc.pid)
                sampler.cancel()
                run.rss, run.fds = (start_rss, end_rss), (start_fds, end_fds)
                if args.keep:
                    import shutil
                    shutil.copytree(tmp / "ws", args.keep, dirs_exist_ok=True)
            finally:
                proc.send_signal(signal.SIGTERM)
                run.returncode = await asyncio.wait_for(proc.wait(), 60)
    run.wall = time.monotonic() - began
    return run, llm, tg


async def _first_reply(tg: SoakTelegram, chat: int) -> None:
    """One message from a chat outside the traffic, until it is answered (a reply or an error): the
    daemon's first answer builds the SDK's response types, a one-time cost the start figure includes."""
    tg.push_text(chat, "please answer m00000")
    async with asyncio.timeout(60):
        while not any(c == chat for _, c, _ in tg.accepted):
            await asyncio.sleep(0.1)


async def _traffic(tg: SoakTelegram, rng: random.Random, run: Run, seconds: float) -> None:
    """``run.messages`` pushes at an even rate over ``seconds``; Telegram faults mixed in."""
    loop = asyncio.get_running_loop()
    interval = seconds / run.messages
    start = loop.time()
    next_burst = start + 30.0  # a burst of 429s once a minute, half-way through each minute
    run.traffic = (time.monotonic(), 0.0)
    for index in range(1, run.messages + 1):
        delay = start + (index - 1) * interval - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        chat = FIRST_CHAT + rng.randrange(run.chats)
        tag = f"m{index:05d}"
        run.pushed[tag] = (time.monotonic(), chat)
        run.by_chat[chat].append(tag)
        tg.push_text(chat, f"please answer {tag}")
        if rng.random() < 0.05:
            tg.fail_next("sendMessage", 500)
        if loop.time() >= next_burst:
            tg.fail_next("sendMessage", 429, retry_after=0.5, times=5)
            next_burst += 60.0
    run.traffic = (run.traffic[0], time.monotonic())


async def _ended(tg: SoakTelegram, run: Run, limit: float) -> None:
    """Until every chat has as many accepted sends as messages, or nothing was sent for 30 s, or ``limit``."""
    loop = asyncio.get_running_loop()
    deadline, count, since = loop.time() + limit, -1, loop.time()
    while loop.time() < deadline and loop.time() - since < 30:
        if len(tg.accepted) != count:
            count, since = len(tg.accepted), loop.time()
            per_chat: dict[int, int] = defaultdict(int)
            for _, chat, _ in tg.accepted:
                per_chat[chat] += 1
            if all(per_chat[chat] >= len(tags) for chat, tags in run.by_chat.items()):
                break
        await asyncio.sleep(0.2)
    run.last_reply = tg.accepted[-1][0] if tg.accepted else 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


async def _sample(pid: int, tg: SoakTelegram, run: Run) -> None:
    t0 = last = time.monotonic()
    cpu = cpu_seconds(pid), time.process_time()
    while True:
        now = time.monotonic()
        new = cpu_seconds(pid), time.process_time()
        span = max(now - last, 1e-9)
        run.samples.append((now - t0, rss_mb(pid), fds(pid), tg.backlog(), (new[0] - cpu[0]) / span * 100,
                            (new[1] - cpu[1]) / span * 100, len(tg.failed), len(tg.accepted)))
        last, cpu = now, new
        await asyncio.sleep(10)


@dataclass
class Report:
    lost: int = 0
    duplicates: int = 0
    errors: int = 0
    replies: int = 0
    delayed: int = 0
    lat_all: list[float] = field(default_factory=list)  # ms, first LLM call succeeded
    lat_clean: list[float] = field(default_factory=list)  # ms, and not queued, no failed send in between
    lat_first_minute: list[float] = field(default_factory=list)
    queued: int = 0
    send_faulted: int = 0
    llm_took: list[float] = field(default_factory=list)


def analyse(run: Run, llm: SoakLLM, tg: SoakTelegram) -> Report:
    rep = Report()
    endings: dict[int, list[tuple[float, str]]] = defaultdict(list)
    for when, chat, text in tg.accepted:
        endings[chat].append((when, text))
    reply_at: dict[str, float] = {}
    for chat, tags in run.by_chat.items():
        got = endings.get(chat, [])
        named: dict[str, int] = defaultdict(int)
        errors = 0
        for when, text in got:
            found = TAG.findall(text)
            if "reply to m" in text and found:
                if text.startswith("(Delayed"):
                    rep.delayed += 1
                else:
                    named[found[-1]] += 1
                reply_at.setdefault(found[-1], when)
            else:
                errors += 1
        rep.errors += errors
        rep.replies += len(named)
        rep.duplicates += sum(n - 1 for n in named.values() if n > 1)
        rep.lost += max(0, len(tags) - len([t for t in tags if t in named]) - errors)
        failed = sorted(when for when, c in tg.failed if c == chat)
        times = [when for when, _ in got]
        for index, tag in enumerate(tags):
            calls = llm.calls.get(tag, [])
            if not calls or calls[0].kind != "ok" or tag not in reply_at:
                continue
            pushed = run.pushed[tag][0]
            took = calls[0].took
            rep.llm_took.append(took * 1000)
            latency = (reply_at[tag] - pushed - took) * 1000
            rep.lat_all.append(latency)
            if pushed - run.traffic[0] < 60:
                rep.lat_first_minute.append(latency)
            queued = index > 0 and (index - 1 >= len(times) or times[index - 1] > pushed)
            faulted = any(pushed <= f <= reply_at[tag] for f in failed)
            rep.queued += queued
            rep.send_faulted += faulted
            if not queued and not faulted:
                rep.lat_clean.append(latency)
    return rep


def table(run: Run, llm: SoakLLM, tg: SoakTelegram, rep: Report) -> str:
    kinds: dict[str, int] = defaultdict(int)
    for calls in llm.calls.values():
        for call in calls:
            kinds[call.kind] += 1
    llm_calls = sum(kinds.values())
    growth = (run.rss[1] - run.rss[0]) / run.rss[0] * 100 if run.rss[0] else float("nan")
    span = run.traffic[1] - run.traffic[0]
    rows = [
        ("messages sent / chats / traffic span", f"{run.messages:,} / {run.chats} / {span:.0f} s", ""),
        ("messages lost (no reply and no error)", f"{rep.lost}", "0"),
        ("duplicates (two unmarked replies to one message)", f"{rep.duplicates}", "0"),
        ("endings: replies / error messages / marked delayed", f"{rep.replies:,} / {rep.errors:,} / {rep.delayed}",
         ""),
        ("LLM calls: ok / 429 / 529 / dropped / stalled",
         " / ".join(f"{kinds[k]:,}" for k in ("ok", "429", "529", "drop", "stall")) + f" (of {llm_calls:,})", ""),
        ("sendMessage accepted / failed by the stand-in", f"{len(tg.accepted):,} / {len(tg.failed):,}", ""),
        ("RSS connected, before any message", f"{run.idle_rss:.1f} MB", ""),
        ("RSS at start (after the first reply) / end", f"{run.rss[0]:.1f} MB / {run.rss[1]:.1f} MB ({growth:+.1f}%)",
         "growth < 10%"),
        ("RSS after the first minute of traffic / end", _after_a_minute(run), ""),
        ("open file descriptors at start / end", f"{run.fds[0]} / {run.fds[1]}", ""),
        ("latency added, LLM ok first try: p50 / p99",
         f"{statistics.median(rep.lat_all):.0f} ms / {percentile(rep.lat_all, 0.99):.0f} ms (n={len(rep.lat_all):,})",
         ""),
        ("of those, not queued behind the chat's previous turn and no failed send: p50 / p99",
         f"{statistics.median(rep.lat_clean):.0f} ms / {percentile(rep.lat_clean, 0.99):.0f} ms "
         f"(n={len(rep.lat_clean):,})", ""),
        ("first minute only: p50 / p99",
         f"{statistics.median(rep.lat_first_minute):.0f} ms / {percentile(rep.lat_first_minute, 0.99):.0f} ms", ""),
        ("LLM stand-in's own answer time (subtracted): p50 / p99",
         f"{statistics.median(rep.llm_took):.1f} ms / {percentile(rep.llm_took, 0.99):.1f} ms", ""),
        ("last reply after the last message", f"{run.last_reply - run.traffic[1]:.1f} s", ""),
        ("daemon exit code after SIGTERM", f"{run.returncode}", "0"),
    ]
    lines = ["| measure | result | target |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def _after_a_minute(run: Run) -> str:
    later = [rss for t, rss, *_ in run.samples if t >= 60]
    if not later or not run.rss[1]:
        return "n/a"
    return f"{later[0]:.1f} MB / {run.rss[1]:.1f} MB ({(run.rss[1] - later[0]) / later[0] * 100:+.1f}%)"


def trajectory(run: Run) -> str:
    lines = ["| t (s) | RSS (MB) | fds | updates waiting | daemon CPU | bench CPU | sends failed / accepted |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {t:.0f} | {r:.1f} | {f} | {b} | {c:.0f}% | {d:.0f}% | {x} / {y} |"
              for t, r, f, b, c, d, x, y in run.samples]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--chats", type=int, default=200)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--warm-up", type=float, default=30.0, help="idle seconds after connecting, before the start figures")
    parser.add_argument("--keep", type=Path, default=None, help="copy the workspace here before it is removed")
    parser.add_argument("--samples", action="store_true", help="also print RSS / fds every 10 s")
    args = parser.parse_args()
    run, llm, tg = asyncio.run(soak(args))
    rep = analyse(run, llm, tg)
    print(table(run, llm, tg, rep))
    if args.samples:
        print()
        print(trajectory(run))
    print(f"\nwall time {run.wall:.0f} s; {rep.queued} of {len(rep.lat_all)} first-try messages were queued behind "
          f"their chat's previous turn, {rep.send_faulted} had a failed send in their window", file=sys.stderr)


if __name__ == "__main__":
    main()
