"""``reverie start`` as a subprocess against the Telegram and LLM stand-ins: crashes, drains, refusals."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fakes.llm import Delay, FakeLLM, Turn
from tests.fakes.process import clean_env, reverie_command
from tests.fakes.telegram import FakeTelegram

OWNER = 111


reverie_cmd = reverie_command
env_for = clean_env


def write_config(tmp_path: Path, llm: FakeLLM, tg: FakeTelegram, **extra: Any) -> Path:
    data: dict[str, Any] = {
        "workspace": str(tmp_path / "ws"),
        "llm": {"provider": "anthropic", "model": "claude-test", "api_key": "sk-ant-daemon-test-000",
                "base_url": llm.url, "max_retries": 0},
        "channels": [{"type": "telegram", "token": tg.token, "base_url": tg.base_url, "allow_from": [str(OWNER)]}],
        "owner": {"telegram": [str(OWNER)]},
    }
    for key, value in extra.items():
        data[key] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class Daemon:
    def __init__(self, config: Path, home: Path) -> None:
        self.config, self.home = config, home
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, *extra: str) -> asyncio.subprocess.Process:
        self.proc = await asyncio.create_subprocess_exec(
            *reverie_cmd(), "start", "--config", str(self.config), *extra, env=env_for(self.home),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        return self.proc

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        await asyncio.wait_for(self.proc.wait(), timeout)
        return self.proc.returncode or 0


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Callable[[Path], Daemon]]:
    started: list[Daemon] = []

    def make(config: Path) -> Daemon:
        started.append(Daemon(config, tmp_path))
        return started[-1]

    yield make
    for d in started:
        if d.proc is not None and d.proc.returncode is None:
            d.proc.kill()
            await d.proc.wait()


async def until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.05)


def replies(tg: FakeTelegram, chat: int = OWNER) -> list[str]:
    return [str(c.get("text")) for c in tg.calls_of("sendMessage") if str(c.get("chat_id")) == str(chat)]


async def test_message_in_reply_out_and_status(tmp_path: Path, fake_llm: FakeLLM, daemon: Any) -> None:
    fake_llm.script(Turn(text="Hello from the daemon"))
    async with FakeTelegram() as tg:
        d = daemon(write_config(tmp_path, fake_llm, tg))
        await d.start()
        tg.push_text(OWNER, "hi")
        await until(lambda: bool(replies(tg)))
        assert replies(tg) == ["Hello from the daemon"]
        status = await asyncio.create_subprocess_exec(*reverie_cmd(), "status", "--config", str(d.config),
                                                      env=env_for(tmp_path), stdout=asyncio.subprocess.PIPE)
        out = (await status.communicate())[0].decode()
        assert "running (pid" in out and "telegram: connected" in out
        assert await d.stop() == 0


async def test_a_second_start_is_refused_naming_the_pid(tmp_path: Path, fake_llm: FakeLLM, daemon: Any) -> None:
    async with FakeTelegram() as tg:
        config = write_config(tmp_path, fake_llm, tg)
        first = daemon(config)
        proc = await first.start()
        await until(lambda: (tmp_path / "ws" / "state" / "status.json").exists())
        second = await asyncio.create_subprocess_exec(*reverie_cmd(), "start", "--config", str(config),
                                                      env=env_for(tmp_path), stderr=asyncio.subprocess.PIPE)
        err = (await asyncio.wait_for(second.communicate(), 20))[1].decode()
        assert second.returncode == 1 and f"pid {proc.pid}" in err
        assert await first.stop() == 0


async def test_sigterm_drains_the_running_turn(tmp_path: Path, fake_llm: FakeLLM, daemon: Any) -> None:
    fake_llm.script(Delay(1.0, Turn(text="finished while draining")))
    async with FakeTelegram() as tg:
        d = daemon(write_config(tmp_path, fake_llm, tg))
        await d.start()
        tg.push_text(OWNER, "take your time")
        await until(lambda: len(fake_llm.requests) == 1)
        assert await d.stop(signal.SIGTERM) == 0
        assert replies(tg) == ["finished while draining"]


async def test_kill_9_mid_turn_then_restart_answers_exactly_once(tmp_path: Path, fake_llm: FakeLLM,
                                                                 daemon: Any) -> None:
    fake_llm.script(Delay(30, Turn(text="never delivered")), Turn(text="answered after the crash"))
    async with FakeTelegram() as tg:
        config = write_config(tmp_path, fake_llm, tg)
        first = daemon(config)
        await first.start()
        tg.push_text(OWNER, "important question")
        await until(lambda: len(fake_llm.requests) == 1)
        await first.stop(signal.SIGKILL)
        second = daemon(config)
        await second.start()
        await until(lambda: bool(replies(tg)))
        await asyncio.sleep(1.0)  # room for a duplicate to show up, if there were one
        assert len(replies(tg)) == 1 and replies(tg)[0].endswith("answered after the crash")
        assert "important question" in str(fake_llm.requests[-1].body["messages"])
        assert await second.stop() == 0


async def test_a_platform_that_refuses_connections_does_not_stop_the_others(
        tmp_path: Path, fake_llm: FakeLLM, daemon: Any) -> None:
    async with FakeTelegram() as tg:
        broken = {"type": "slack", "bot_token": "xoxb-x", "app_token": "xapp-x", "base_url": "http://127.0.0.1:9/api/"}
        config = write_config(tmp_path, fake_llm, tg)
        data = yaml.safe_load(config.read_text())
        data["channels"].append(broken)
        config.write_text(yaml.safe_dump(data))
        d = daemon(config)
        await d.start()
        tg.push_text(OWNER, "are you there?")
        await until(lambda: bool(replies(tg)))
        status = await asyncio.create_subprocess_exec(*reverie_cmd(), "status", "--config", str(config),
                                                      env=env_for(tmp_path), stdout=asyncio.subprocess.PIPE)
        out = (await status.communicate())[0].decode()
        assert "telegram: connected" in out and "slack: down" in out
        assert await d.stop() == 0


async def test_stranger_gets_a_code_and_the_owner_approves_it(tmp_path: Path, fake_llm: FakeLLM,
                                                              daemon: Any) -> None:
    async with FakeTelegram() as tg:
        d = daemon(write_config(tmp_path, fake_llm, tg))
        await d.start()
        tg.push_text(555, "let me in", user_id=555)
        await until(lambda: bool(replies(tg, 555)))
        code = replies(tg, 555)[0].split("code: ")[1].split()[0]
        approve = await asyncio.create_subprocess_exec(*reverie_cmd(), "pair", "approve", code, "--config",
                                                       str(d.config), env=env_for(tmp_path),
                                                       stdout=asyncio.subprocess.PIPE)
        assert "Approved" in (await approve.communicate())[0].decode()
        tg.push_text(555, "now?", user_id=555)
        await until(lambda: len(replies(tg, 555)) == 2)
        assert replies(tg, 555)[1] == "ok"
        assert await d.stop() == 0


_LARGE_BLOCKS = """
import ctypes, sys
from agent.serve import steady_malloc
if sys.argv[1] == "steady":
    steady_malloc()
libc = ctypes.CDLL(None)
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc.mallinfo2.restype = Info
block = bytearray(2 << 20)
del block  # glibc's default: this free raises the size it serves from mmap to 2 MB
before = libc.mallinfo2().hblkhd
block = bytearray(1 << 20)
print(libc.mallinfo2().hblkhd - before >= 1 << 20)  # it came from mmap, so it goes back when freed
"""


def test_the_daemon_keeps_large_blocks_in_mmap_so_freeing_them_gives_memory_back() -> None:
    import ctypes
    import subprocess
    import sys
    if not sys.platform.startswith("linux") or not hasattr(ctypes.CDLL(None), "mallinfo2"):
        pytest.skip("glibc 2.33 or later only")
    out = {mode: subprocess.run([sys.executable, "-c", _LARGE_BLOCKS, mode], capture_output=True, text=True,
                                check=True).stdout.strip() for mode in ("steady", "default")}
    assert out == {"steady": "True", "default": "False"}
