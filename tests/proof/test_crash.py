"""Crash and restart: ``reverie start`` killed with SIGKILL at random points, 20 times, while four chats
talk to it (some turns call tools), a cron job fires every 2 s, Dream runs and an MCP server is up.

Afterwards: every message got a reply, never twice unmarked (a reply the platform confirmed just
before a kill may be sent again, marked as delayed); every session file loads; the memory
repository is consistent; no cron slot ran twice, and a one-shot due during the kills ran once; no
MCP server process is left over.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from agent.cron.runs import RunLog
from sessions import SessionStore
from tests.fakes.llm import Delay, FakeLLM, Recorded, Turn
from tests.fakes.process import clean_env, reverie_command
from tests.fakes.telegram import FakeTelegram

CHATS = [1001, 1002, 1003, 1004]
KILLS = 20
SERVER = Path(__file__).resolve().parents[1] / "mcp" / "servers" / "basic.py"


def config_for(tmp_path: Path, llm: FakeLLM, tg: FakeTelegram) -> Path:
    data: dict[str, Any] = {
        "workspace": str(tmp_path / "ws"),
        "llm": {"provider": "anthropic", "model": "claude-test", "api_key": "sk-ant-crash-000111",
                "base_url": llm.url, "max_retries": 0},
        "channels": [{"type": "telegram", "token": tg.token, "base_url": tg.base_url,
                      "allow_from": [str(c) for c in CHATS]}],
        "owner": {"telegram": [str(CHATS[0])]},
        "cron_jobs": [{"name": "tick", "every": 2, "message": "tick", "deliver_to": {"channel": "telegram",
                                                                                     "chat": str(CHATS[0])}},
                      # a one-shot due while the kills go on: it may be cut mid-run or come due while down
                      {"name": "stretch", "at": (datetime.now().astimezone() + timedelta(seconds=15)).isoformat(),
                       "message": "remind me to stretch", "deliver_to": {"channel": "telegram",
                                                                          "chat": str(CHATS[1])}}],
        "memory": {"dream": {"interval_minutes": 0.05}},
        "mcp_servers": [{"name": "basic", "command": sys.executable, "args": [str(SERVER)]}],
        "logging": {"level": "WARNING"},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def text_of(rec: Recorded) -> str:
    content = rec.body["messages"][-1]["content"]
    return content if isinstance(content, str) else " ".join(
        str(b.get("text", "")) for b in content if isinstance(b, dict))


def respond(rec: Recorded) -> Any:
    """A model that decides from the request alone, so it answers the same after every restart."""
    system = json.dumps(rec.body.get("system", ""))
    text = text_of(rec)
    pause = random.choice([0.0, 0.05, 0.3, 0.8])
    if "You keep MEMORY.md" in system:  # Dream: one durable fact, kept from then on
        memory = text.split("<current_memory>\n", 1)[1].split("\n</current_memory>", 1)[0]
        fact = "" if "Asks many questions" in memory else "\n- Asks many questions (2026-12-04, telegram)"
        return Delay(pause, Turn(text=f"<memory>\n{memory}{fact}\n</memory>\n<removed>\n</removed>"))
    last = rec.body["messages"][-1]["content"]
    if isinstance(last, list) and any(b.get("type") == "tool_result" for b in last if isinstance(b, dict)):
        asked = re.findall(r"\bm\d+\b", json.dumps(rec.body["messages"]))
        return Delay(pause, Turn(text=f"reply to {asked[-1] if asked else '?'} after a tool"))
    word = re.findall(r"\bm\d+\b", text)
    if "[Scheduled job" in text:
        return Delay(pause, Turn(text="time to stretch" if "stretch" in text else "tick done"))
    if word and int(word[-1][1:]) % 3 == 0:  # every third message makes the model use a tool first
        return Delay(pause, Turn(tool_calls=[("write_file", {"path": f"notes/{word[-1]}.txt", "content": "x"})]))
    return Delay(pause, Turn(text=f"reply to {word[-1] if word else '?'}"))


async def start(config: Path, home: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(*reverie_command(), "start", "--config", str(config),
                                                env=clean_env(home), stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.DEVNULL)


def replies(tg: FakeTelegram) -> dict[str, list[str]]:
    """For each message mK, the replies the stand-in received for it."""
    out: dict[str, list[str]] = {}
    for message in tg.sent:  # accepted sends only
        text = str(message.get("text"))
        for name in re.findall(r"reply to (m\d+)", text):
            out.setdefault(name, []).append(text)
    return out


async def test_twenty_kills_lose_nothing_and_repeat_nothing(tmp_path: Path, fake_llm: FakeLLM) -> None:
    random.seed(7)
    fake_llm.responder = respond
    sent = 0
    async with FakeTelegram() as tg:
        config = config_for(tmp_path, fake_llm, tg)
        for round_ in range(KILLS):
            proc = await start(config, tmp_path)
            if round_ % 2:  # every other kill lands once it serves, in the middle of turns
                await _serving(tmp_path / "ws", proc.pid)
            for _ in range(random.randint(1, 4)):
                sent += 1
                tg.push_text(random.choice(CHATS), f"please answer m{sent}")
            await asyncio.sleep(random.uniform(0.3, 2.5))
            proc.kill()  # SIGKILL: no drain, no cleanup
            await proc.wait()
        proc = await start(config, tmp_path)
        try:
            async with asyncio.timeout(120):
                while len(replies(tg)) < sent or not _dreamt(tmp_path / "ws") or not _stretched(tg):
                    await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)  # room for a duplicate to show up
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 60)
    got = replies(tg)
    assert sorted(got, key=lambda n: int(n[1:])) == [f"m{i}" for i in range(1, sent + 1)]  # nothing lost
    for name, texts in got.items():
        unmarked = [t for t in texts if not t.startswith("(Delayed")]
        assert len(unmarked) <= 1, (name, texts)  # never twice unmarked
    workspace = tmp_path / "ws"
    _sessions_load(workspace)
    _memory_consistent(workspace)
    slots = Counter(r.scheduled for r in RunLog(workspace / "cron").runs(limit=10_000)
                    if r.outcome == "ok" and r.scheduled is not None)
    assert slots and max(slots.values()) == 1  # no cron slot ran twice
    stretch = [str(m.get("text")) for m in tg.sent if "time to stretch" in str(m.get("text"))]
    assert len([t for t in stretch if not t.startswith("(Delayed")]) <= 1 and stretch  # the one-shot: once
    assert [r.outcome for r in RunLog(workspace / "cron").runs(limit=10_000) if r.job == "stretch"] == ["ok"]
    assert _leftover_servers() == []


def _stretched(tg: FakeTelegram) -> bool:
    return any("time to stretch" in str(m.get("text")) for m in tg.sent)


async def _serving(workspace: Path, pid: int) -> None:
    status = workspace / "state" / "status.json"
    async with asyncio.timeout(30):
        while True:
            try:
                data = json.loads(status.read_text())
                if data["pid"] == pid and data["channels"]["telegram"]["connected"]:
                    return
            except (OSError, ValueError, KeyError, TypeError):
                pass
            await asyncio.sleep(0.1)


def _dreamt(workspace: Path) -> bool:
    memory = workspace / "memory" / "MEMORY.md"
    return memory.exists() and "Asks many questions" in memory.read_text(errors="replace")


def _sessions_load(workspace: Path) -> None:
    store = SessionStore(workspace / "sessions")
    for key in store.keys():
        session = store.get(key)  # a torn tail is repaired; nothing raises
        assert not any("could not be read" in n for n in session.notices), (key, session.notices)


def _memory_consistent(workspace: Path) -> None:
    folder = workspace / "memory"
    if not (folder / ".git").exists():
        return
    fsck = subprocess.run(["git", "fsck", "--full"], cwd=folder, capture_output=True, text=True, timeout=60)
    assert fsck.returncode == 0, fsck.stderr
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=60)
    assert head.returncode == 0, head.stderr


def _leftover_servers() -> list[str]:
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, timeout=30)
    return [line for line in ps.stdout.splitlines() if str(SERVER) in line]
