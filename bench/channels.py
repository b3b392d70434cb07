"""Channel benchmark: ``reverie start`` as a subprocess against the Telegram, Discord, Slack and LLM stand-ins.

    python bench/channels.py        # prints a Markdown table; takes about a minute

1. 100 chats send at once while the LLM takes 1 s per answer: when has every chat its reply?
2. 50 messages a second for 10 s with an instant LLM: the latency the daemon adds (p50, p99), from
   the update being available to the stand-in receiving sendMessage (long-poll pickup included).
3. Idle RSS of the daemon with all three platforms connected.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from tests.fakes.discord import FakeDiscord  # noqa: E402
from tests.fakes.llm import Delay, FakeLLM, Turn  # noqa: E402
from tests.fakes.process import clean_env, reverie_command  # noqa: E402
from tests.fakes.slack import FakeSlack  # noqa: E402
from tests.fakes.telegram import FakeTelegram  # noqa: E402

Row = tuple[str, str, str]


def write_config(tmp: Path, llm: FakeLLM, channels: list[dict[str, Any]], chats: int) -> Path:
    data = {"workspace": str(tmp / "ws"),
            "llm": {"provider": "anthropic", "model": "claude-bench", "api_key": "sk-ant-bench-0000",
                    "base_url": llm.url, "max_retries": 0},
            "agent": {"max_concurrent_turns": 256},
            "channels": channels, "logging": {"level": "WARNING"}}
    for channel in channels:
        channel["allow_from"] = [str(1000 + i) for i in range(chats)] + ["UBENCH", "4242"]
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


async def start_daemon(config: Path, tmp: Path, patch: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    env = clean_env(tmp) | (patch or {})
    return await asyncio.create_subprocess_exec(*reverie_command(), "start", "--config", str(config), env=env,
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)


async def wait_connected(tmp: Path, labels: list[str], timeout: float = 30) -> None:
    status = tmp / "ws" / "state" / "status.json"
    async with asyncio.timeout(timeout):
        while True:
            try:
                channels = json.loads(status.read_text())["channels"]
                if all(channels.get(label, {}).get("connected") for label in labels):
                    return
            except (OSError, ValueError, KeyError):
                pass
            await asyncio.sleep(0.1)


def rss_mb(pid: int) -> float:
    """RSS of the daemon process and its children (the `reverie` script execs python directly)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def burst(tmp: Path) -> list[Row]:
    async with FakeLLM() as llm, FakeTelegram() as tg:
        llm.responder = lambda rec: Delay(1.0, Turn(text="ok"))
        proc = await start_daemon(write_config(tmp, llm, [{"type": "telegram", "token": tg.token,
                                                          "base_url": tg.base_url}], 100), tmp)
        try:
            await wait_connected(tmp, ["telegram"])
            start = time.monotonic()
            for i in range(100):
                tg.push_text(1000 + i, f"hello {i}")
            async with asyncio.timeout(60):
                while len(tg.calls_of("sendMessage")) < 100:
                    await asyncio.sleep(0.01)
            sends = [t for (m, _), t in zip(tg.calls, tg.call_times, strict=True) if m == "sendMessage"]
            done = max(sends) - start
        finally:
            proc.terminate()
            await proc.wait()
    return [("100 chats at once, LLM 1 s: last reply after", f"{done:.2f} s", "<= 2 s")]


async def steady(tmp: Path, rate: int = 50, seconds: int = 10) -> list[Row]:
    async with FakeLLM() as llm, FakeTelegram() as tg:
        llm.default = Turn(text="ok")
        proc = await start_daemon(write_config(tmp, llm, [{"type": "telegram", "token": tg.token,
                                                          "base_url": tg.base_url}], rate), tmp)
        pushed: dict[str, float] = {}
        try:
            await wait_connected(tmp, ["telegram"])
            for n in range(rate * seconds):
                chat = 1000 + n % rate  # each chat at 1 message a second: within Telegram's per-chat budget
                pushed[f"{chat}:{n // rate}"] = time.monotonic()
                tg.push_text(chat, f"message {n}")
                await asyncio.sleep(1 / rate)
            async with asyncio.timeout(60):
                while len(tg.calls_of("sendMessage")) < rate * seconds:
                    await asyncio.sleep(0.05)
        finally:
            proc.terminate()
            await proc.wait()
        counts: dict[str, int] = {}
        latencies = []
        for (method, params), when in zip(tg.calls, tg.call_times, strict=True):
            if method == "sendMessage":
                chat = str(params["chat_id"])
                key = f"{chat}:{counts.get(chat, 0)}"
                counts[chat] = counts.get(chat, 0) + 1
                latencies.append((when - pushed[key]) * 1000)
    latencies.sort()
    p50, p99 = statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1]
    return [(f"{rate} msg/s for {seconds} s, instant LLM: latency added p50 / p99", f"{p50:.0f} ms / {p99:.0f} ms",
             "(lower is better)")]


async def idle(tmp: Path) -> list[Row]:
    async with FakeLLM() as llm, FakeTelegram() as tg, FakeDiscord() as dc, FakeSlack() as sl:
        channels = [{"type": "telegram", "token": tg.token, "base_url": tg.base_url},
                    {"type": "discord", "token": dc.token, "api_url": dc.api_url, "gateway_url": dc.gateway_url},
                    {"type": "slack", "bot_token": sl.bot_token, "app_token": sl.app_token, "base_url": sl.api_url}]
        config = write_config(tmp, llm, channels, 1)
        proc = await start_daemon(config, tmp)
        try:
            await wait_connected(tmp, ["telegram", "discord", "slack"])
            await asyncio.sleep(5)
            rss = rss_mb(proc.pid)
        finally:
            proc.terminate()
            await proc.wait()
    return [("idle RSS, Telegram + Discord + Slack connected", f"{rss:.0f} MB", "<= 150 MB")]


async def main() -> None:
    rows: list[Row] = []
    for part in (burst, steady, idle):
        with tempfile.TemporaryDirectory() as tmp:
            rows += await part(Path(tmp))
    print("| measure | result | target |\n|---|---|---|")
    for name, value, target in rows:
        print(f"| {name} | {value} | {target} |")


if __name__ == "__main__":
    asyncio.run(main())
