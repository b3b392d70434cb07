"""Faults from outside, all at once: the LLM answers 429/529 on 10% of calls, drops 5% of streams midway
and stalls beyond the timeout on 2%; Telegram fails 5% of sends and rate-limits a burst; the MCP server
crashes in the middle of a call; the workspace's disk refuses writes for a moment.

Every message must end in exactly one reply or one clear error (never lost, never twice unmarked),
and the daemon must still serve afterwards.
"""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fakes.llm import Delay, Fail, FakeLLM, Recorded, StreamError, Turn
from tests.fakes.process import clean_env, reverie_command
from tests.fakes.telegram import FakeTelegram

CHATS = [2001, 2002, 2003, 2004, 2005]
SERVER = Path(__file__).resolve().parents[1] / "mcp" / "servers" / "basic.py"
ERRORS = ("overloaded", "rate", "timed out", "took longer", "could not", "failed", "error", "try again",
          "went wrong", "stopped", "interrupted", "unavailable")


def write_config(tmp_path: Path, llm: FakeLLM, tg: FakeTelegram) -> Path:
    data: dict[str, Any] = {
        "workspace": str(tmp_path / "ws"),
        "llm": {"provider": "anthropic", "model": "claude-test", "api_key": "sk-ant-faults-000111",
                "base_url": llm.url, "max_retries": 0, "stream_retries": 2, "timeout": 2},
        "agent": {"turn_timeout": 20},
        "channels": [{"type": "telegram", "token": tg.token, "base_url": tg.base_url,
                      "allow_from": [str(c) for c in CHATS]}],
        "owner": {"telegram": [str(CHATS[0])]},
        "mcp_servers": [{"name": "basic", "command": sys.executable, "args": [str(SERVER)], "timeout": 5}],
        "memory": {"dream": {"enabled": False}},
        "logging": {"level": "INFO"},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def faulty(rng: random.Random) -> Any:
    def respond(rec: Recorded) -> Any:
        messages = rec.body["messages"]
        asked = re.findall(r"\bm\d+\b", str(messages[-1]))
        roll = rng.random()
        if roll < 0.05:
            return Fail(429, "rate_limit_error", "Rate limited")
        if roll < 0.10:
            return Fail(529, "overloaded_error", "Overloaded")
        if roll < 0.15:
            return StreamError(partial="Partial", drop=True)
        if roll < 0.17:
            return Delay(5.0, Turn(text="too late"))  # beyond llm.timeout
        last = messages[-1]["content"]
        if isinstance(last, list) and any(b.get("type") == "tool_result" for b in last):
            found = re.findall(r"\bm\d+\b", str(messages))
            return Turn(text=f"reply to {found[-1] if found else '?'} after a tool")
        if asked and int(asked[-1][1:]) % 10 == 0:  # now and then the MCP server dies during a call
            return Turn(tool_calls=[("mcp__basic__crash", {})])
        return Turn(text=f"reply to {asked[-1] if asked else '?'}")

    return respond


def outcomes(tg: FakeTelegram) -> dict[int, list[str]]:
    """The texts each chat received (sends the stand-in accepted, not the attempts it failed)."""
    out: dict[int, list[str]] = {}
    for message in tg.sent:
        out.setdefault(int(message["chat"]["id"]), []).append(str(message.get("text")))
    return out


async def test_the_daemon_keeps_its_promises_under_a_fault_mix(tmp_path: Path, fake_llm: FakeLLM) -> None:
    rng = random.Random(11)
    fake_llm.responder = faulty(rng)
    async with FakeTelegram() as tg:
        config = write_config(tmp_path, fake_llm, tg)
        proc = await asyncio.create_subprocess_exec(*reverie_command(), "start", "--config", str(config),
                                                    env=clean_env(tmp_path), stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.DEVNULL)
        try:
            asked = await _traffic(tg, rng, proc.pid, tmp_path)
            await _quiet(tg, seconds=8, limit=150)  # retries and backoffs settle
            _all_ended(asked, outcomes(tg), tmp_path)
            await asyncio.sleep(1.5)  # room for a duplicate
            tg.push_text(CHATS[1], "still there? m9999")  # and it still serves
            fake_llm.responder = lambda rec: Turn(text="yes, m9999")
            async with asyncio.timeout(30):
                while not any("m9999" in t for t in outcomes(tg).get(CHATS[1], [])):
                    await asyncio.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 60)
    got = outcomes(tg)
    for chat, names in asked.items():
        texts = got.get(chat, [])
        for name in names:
            answered = [t for t in texts if re.search(rf"\b{name}\b", t)]
            assert len([t for t in answered if not t.startswith("(Delayed")]) <= 1, (name, answered)
        replies = [t for t in texts if "reply to m" in t]
        errors = [t for t in texts if "reply to m" not in t and "m9999" not in t]
        assert len(replies) + len(errors) == len(names), (chat, names, texts)  # one ending per message
        assert all(any(word in e.lower() for word in ERRORS) for e in errors), errors  # each error says why
    assert proc.returncode == 0


async def _traffic(tg: FakeTelegram, rng: random.Random, pid: int, home: Path) -> dict[int, list[str]]:
    """Send 60 messages over a few seconds, with Telegram faults and a moment of a full disk."""
    asked: dict[int, list[str]] = {}
    await asyncio.sleep(3)  # let it connect
    for index in range(1, 61):
        chat = rng.choice(CHATS)
        asked.setdefault(chat, []).append(f"m{index}")
        tg.push_text(chat, f"please answer m{index}")
        if rng.random() < 0.05:
            tg.fail_next("sendMessage", 500)
        if index == 20:
            tg.fail_next("sendMessage", 429, retry_after=0.5, times=3)  # a burst is rate-limited
        if index == 40:
            _disk_full(pid, seconds=0.5)
        await asyncio.sleep(rng.uniform(0.0, 0.1))
    return asked


async def _quiet(tg: FakeTelegram, seconds: float, limit: float) -> None:
    """Until nothing was sent for ``seconds`` (at most ``limit`` seconds in all)."""
    loop = asyncio.get_running_loop()
    deadline, count, since = loop.time() + limit, -1, loop.time()
    while loop.time() < deadline and loop.time() - since < seconds:
        now = len(tg.sent)
        if now != count:
            count, since = now, loop.time()
        await asyncio.sleep(0.2)


def _all_ended(asked: dict[int, list[str]], got: dict[int, list[str]], home: Path) -> None:
    missing = [n for chat, names in asked.items() for n in names
               if not any(re.search(rf"\b{n}\b", t) for t in got.get(chat, []))]
    unnamed = {chat: [t for t in texts if not re.search(r"\bm\d+\b", t)] for chat, texts in got.items()}
    log = (home / "ws" / "logs" / "reverie.log")
    tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
    assert not missing or sum(len(v) for v in unnamed.values()) >= len(missing), (missing, unnamed, tail)


def _disk_full(pid: int, seconds: float) -> None:
    """For ``seconds``, the daemon cannot grow any file (its file-size limit drops to 1 byte)."""
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        pytest.skip("prlimit (util-linux) is needed to make the disk full for a moment")
    subprocess.run([prlimit, f"--pid={pid}", "--fsize=1:"], check=True, timeout=10)
    loop = asyncio.get_running_loop()
    loop.call_later(seconds, lambda: subprocess.run([prlimit, f"--pid={pid}", "--fsize=unlimited:"], check=True,
                                                    timeout=10))
