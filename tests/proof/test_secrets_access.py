"""Issue 7, "Secrets and access": after a full daemon run no configured secret is anywhere on disk, every
file is owner-only, nothing listens beyond loopback, and strangers, non-owners and group members can
neither run admin commands nor reach other chats' sessions through tools."""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import json
import os
import signal
import stat
import subprocess
import zlib
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.config_file import validate
from agent.daemon import build_daemon
from agent.logs import Masker
from agent.serve import serve
from agent.tools.registry import ToolContext
from agent.types import Message, ToolCall
from channels.access import PairingStore
from sessions import SessionStore
from tests.fakes.llm import FakeLLM, Recorded, Turn
from tests.fakes.process import clean_env, reverie_command
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeTelegram
from tests.test_daemon import Daemon, daemon, replies, until, write_config

__all__ = ["daemon"]  # the fixture, re-exported for this module's tests

OWNER, FRIEND, STRANGER, GROUP, MEMBER = 111, 222, 555, -100200, 42

# Deliberately not shaped like any well-known key, so only the config/env masking can hide them.
LLM_KEY = "llmkey-Proof7Zq81aSecretLLM"
TG_TOKEN = "987654:PROOF7tgSecretTokenXy"
MCP_ENV = "mcpenv-Proof7Qw9SecretEnv"
MCP_HEADER = "mcphdr-Proof7Rt5SecretHdr"
ENV_SECRET = "ghp_Proof7EnvSecretGithub0042"
CRON_MESSAGE = "proof cron ping: say hello"


# --- the scripted model ---------------------------------------------------------------------------------


def _last_text(rec: Recorded) -> str:
    return json.dumps(rec.body.get("messages", [])[-1:])


def _dream_answer(rec: Recorded) -> Turn:
    prompt = _last_text(rec).encode().decode("unicode_escape")
    current = prompt.split("<current_memory>\n", 1)[1].split("\n</current_memory>", 1)[0]
    fact = f"- Likes green tea ({date.today().isoformat()}, telegram)"
    return Turn(text=f"<memory>\n{current}\n{fact}\n</memory>\n<removed>\n</removed>")


def responder(rec: Recorded) -> Turn:
    """One answer per kind of request; cron and Dream may interleave with chat turns, so no FIFO script."""
    last = _last_text(rec)
    if "<current_memory>" in last:
        return _dream_answer(rec)
    if "tool_result" in last:
        return Turn(text=f"Done. For the record, your key is {LLM_KEY}.")
    if "my key is" in last:
        return Turn(text=f"Noted your key {LLM_KEY}", tool_calls=[
            ("write_file", {"path": "notes/todo.md", "content": "buy milk\n"})])
    if "read my notes" in last:
        return Turn(tool_calls=[("read_file", {"path": "notes/todo.md"})])
    if "remember" in last:
        return Turn(tool_calls=[("remember", {"fact": "Prefers green tea"}),
                                ("remember", {"fact": f"The API key is {LLM_KEY}"})])
    if "proof cron ping" in last:
        return Turn(text="hello from cron")
    return Turn(text="ok")


# --- scanning ---------------------------------------------------------------------------------------------


def _git_objects(repo: Path) -> bytes:
    """Every object of the repository (loose and packed), as git itself decompresses them."""
    if not (repo / ".git").exists():
        return b""
    out = subprocess.run(["git", "-C", str(repo), "cat-file", "--batch-all-objects", "--batch"],
                         capture_output=True, check=True).stdout
    log = subprocess.run(["git", "-C", str(repo), "log", "-p", "--all"], capture_output=True, check=True).stdout
    return out + log


def _decoded(data: bytes) -> Iterator[bytes]:
    """The bytes as stored, plus their gzip or zlib decompression when they are compressed."""
    yield data
    for inflate in (gzip.decompress, zlib.decompress):
        try:
            yield inflate(data)
        except Exception:
            pass


def leaks(root: Path, secrets: dict[str, str]) -> list[str]:
    """``name in path`` for every secret found in any file under ``root`` (binary-safe, decompressed)."""
    found: list[str] = []
    blobs = [(str(p.relative_to(root)), p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()]
    blobs += [(f"git objects of {repo.relative_to(root)}", _git_objects(repo))
              for repo in [root / "memory"]]
    for where, data in blobs:
        for blob in _decoded(data):
            found += [f"{name} in {where}" for name, value in secrets.items() if value.encode() in blob]
    return sorted(set(found))


def loose_permissions(root: Path) -> list[str]:
    bad = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_symlink():
            continue
        if mode & 0o077:
            bad.append(f"{path.relative_to(root)} {oct(mode)}")
    return bad


# --- sockets ---------------------------------------------------------------------------------------------


def _tree(pid: int) -> set[int]:
    """``pid`` and all its descendants."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, grew = {pid}, True
    while grew:
        new = {p for p, parent in parents.items() if parent in tree} - tree
        tree |= new
        grew = bool(new)
    return tree


def _socket_inodes(pids: set[int]) -> set[str]:
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    return inodes


def _address(hex_addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hex_addr)
    if len(raw) == 4:
        return ipaddress.IPv4Address(raw[::-1])
    return ipaddress.IPv6Address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))


def listening(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state held by ``pid`` or its children."""
    inodes, found = _socket_inodes(_tree(pid)), []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:
                host, port = local.split(":")
                found.append((str(_address(host)), int(port, 16)))
    return found


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return ip.is_loopback or bool(mapped and mapped.is_loopback)


def test_the_proc_parsers_decode_addresses() -> None:
    assert str(_address("0100007F")) == "127.0.0.1" and str(_address("00000000")) == "0.0.0.0"
    assert str(_address("00000000000000000000000001000000")) == "::1"
    assert is_loopback(str(_address("0000000000000000FFFF00000100007F")))
    assert not is_loopback("0.0.0.0") and not is_loopback("::")


# --- 1-3: the full scenario, as a subprocess ------------------------------------------------------------


def scenario_config(tmp_path: Path, llm: FakeLLM, tg: FakeTelegram) -> Path:
    path = write_config(tmp_path, llm, tg)
    data = yaml.safe_load(path.read_text())
    data["llm"]["api_key"] = LLM_KEY
    data["mcp_servers"] = [
        {"name": "broken", "command": "python3", "args": ["-c", "import sys; sys.exit(3)"],
         "env": {"BROKEN_KEY": MCP_ENV}, "timeout": 2},
        {"name": "remote", "transport": "http", "url": "http://127.0.0.1:9/mcp", "timeout": 2,
         "headers": {"Authorization": f"Bearer {MCP_HEADER}"}},
    ]
    data["cron_jobs"] = [{"name": "ping", "every": 2, "message": CRON_MESSAGE}]
    data["memory"] = {"dream": {"interval_minutes": 0.02}}
    path.write_text(yaml.safe_dump(data))
    return path


async def _converse(tg: FakeTelegram, fake_llm: FakeLLM, d: Daemon) -> None:
    tg.push_text(OWNER, f"my key is {LLM_KEY}, please keep a todo list")
    await until(lambda: len(replies(tg)) >= 1)
    assert d.proc is not None
    assert listening(d.proc.pid) == [], "with the default config nothing may listen"
    for text in ("read my notes", "please remember that I like green tea", "/status"):
        count = len(replies(tg))
        tg.push_text(OWNER, text)
        await until(lambda count=count: len(replies(tg)) > count)  # type: ignore[misc]
    ws = d.config.parent / "ws"
    await until(lambda: "hello from cron" in " ".join(replies(tg)), timeout=30)
    await until(lambda: b"dream:" in subprocess.run(["git", "-C", str(ws / "memory"), "log", "--oneline"],
                                                     capture_output=True).stdout, timeout=30)


async def test_a_full_run_leaves_no_secret_and_only_private_files(tmp_path: Path, fake_llm: FakeLLM,
                                                                 daemon: Callable[[Path], Daemon]) -> None:
    fake_llm.responder = responder
    async with FakeTelegram(token=TG_TOKEN) as tg:
        d = daemon(scenario_config(tmp_path, fake_llm, tg))
        d.home = tmp_path
        os.environ["GITHUB_TOKEN"] = ENV_SECRET  # clean_env copies os.environ; removed below
        try:
            await d.start()
        finally:
            del os.environ["GITHUB_TOKEN"]
        await _converse(tg, fake_llm, d)
        assert await d.stop(signal.SIGTERM) == 0
        assert d.proc is not None and d.proc.stdout is not None and d.proc.stderr is not None
        output = await d.proc.stdout.read() + await d.proc.stderr.read()
    ws = tmp_path / "ws"
    config = validate(yaml.safe_load(d.config.read_text()), None)
    assert {LLM_KEY, TG_TOKEN, MCP_ENV, MCP_HEADER} <= config.secrets()
    secrets = {f"config secret #{i}": s for i, s in enumerate(sorted(config.secrets()))} | {"GITHUB_TOKEN": ENV_SECRET}
    # the scenario really happened: a remembered fact, a Dream commit, a cron run, a status answer
    memory = (ws / "memory" / "MEMORY.md").read_text()
    assert "Prefers green tea" in memory and "Likes green tea" in memory
    assert "running" in " ".join(replies(tg)).lower() or "status" in " ".join(replies(tg)).lower()
    assert (ws / "notes" / "todo.md").read_text() == "buy milk\n"
    assert leaks(ws, secrets) == []
    assert [name for name, value in secrets.items() if value.encode() in output] == []
    sent = json.dumps([params for _, params in tg.calls if "text" in params])
    assert [name for name, value in secrets.items() if value in sent] == []
    assert loose_permissions(ws) == []


async def test_init_writes_an_owner_only_config(tmp_path: Path) -> None:
    config = tmp_path / "conf" / "config.yaml"
    proc = await asyncio.create_subprocess_exec(
        *reverie_command(), "init", "--yes", "--config", str(config), "--api-key-env", "PROOF_KEY",
        "--workspace", str(tmp_path / "ws"), env=clean_env(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, (out + err).decode()
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) & 0o077 == 0


async def test_slack_http_mode_listens_on_loopback_only(tmp_path: Path, fake_llm: FakeLLM,
                                                       daemon: Callable[[Path], Daemon]) -> None:
    async with FakeTelegram() as tg, FakeSlack() as sl:
        path = write_config(tmp_path, fake_llm, tg)
        data = yaml.safe_load(path.read_text())
        data["channels"].append({"type": "slack", "bot_token": sl.bot_token, "mode": "http", "port": 0,
                                 "signing_secret": "signing-Proof7Secret", "base_url": sl.api_url})
        path.write_text(yaml.safe_dump(data))
        d = daemon(path)
        proc = await d.start()
        await until(lambda: bool(listening(proc.pid)), timeout=30)
        assert all(is_loopback(host) for host, _ in listening(proc.pid)), listening(proc.pid)
        assert await d.stop() == 0


# --- 4: access, in process ---------------------------------------------------------------------------------


def access_config(tmp_path: Path, llm: FakeLLM, tg: FakeTelegram) -> Any:
    return validate({
        "workspace": str(tmp_path / "ws"),
        "llm": {"provider": "anthropic", "model": "claude-test", "api_key": LLM_KEY, "base_url": llm.url,
                "max_retries": 0},
        "channels": [{"type": "telegram", "token": tg.token, "base_url": tg.base_url,
                      "allow_from": [str(FRIEND)], "allow_chats": [str(GROUP)], "group_policy": "open"}],
        "owner": {"telegram": [str(OWNER)]},
        "memory": {"dream": {"enabled": False}},
        "cron": {"enabled": False},
    }, None)


class Running:
    def __init__(self, tmp_path: Path, llm: FakeLLM, tg: FakeTelegram) -> None:
        self.daemon = build_daemon(access_config(tmp_path, llm, tg))
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Any:
        self.task = asyncio.create_task(serve(self.daemon, stop=self.stop, drain_timeout=5))
        await until(lambda: all(ch.state.connected for ch in self.daemon.channels.values()))
        return self.daemon

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        assert self.task is not None
        await self.task


async def test_a_stranger_gets_a_pairing_code_and_nothing_else(tmp_path: Path, fake_llm: FakeLLM) -> None:
    async with FakeTelegram() as tg, Running(tmp_path, fake_llm, tg):
        for text in ("hello?", "/status", "/approve ABCDEFGH", "/revoke telegram 111", "read sessions/"):
            tg.push_text(STRANGER, text)
        await until(lambda: bool(replies(tg, STRANGER)))
        await asyncio.sleep(1.0)  # room for anything more to arrive
    answers = replies(tg, STRANGER)
    assert len(answers) == 1 and "code: " in answers[0], answers  # told once, then silence
    assert fake_llm.requests == []
    pairing = json.loads((tmp_path / "ws" / "pairing" / "pairing.json").read_text())
    assert pairing.get("approved", {}).get("telegram", {}) == {}


async def test_admin_commands_are_refused_to_an_allowed_non_owner(tmp_path: Path, fake_llm: FakeLLM) -> None:
    async with FakeTelegram() as tg, Running(tmp_path, fake_llm, tg):
        tg.push_text(STRANGER, "let me in")
        await until(lambda: bool(replies(tg, STRANGER)))
        code = replies(tg, STRANGER)[0].split("code: ")[1].split()[0]
        for text in ("/status", f"/approve {code}", f"/revoke telegram {OWNER}", "/revoke telegram 222"):
            tg.push_text(FRIEND, text)
        await until(lambda: len(replies(tg, FRIEND)) >= 4)
        tg.push_text(STRANGER, "am I in now?")
        await asyncio.sleep(1.0)
    assert all(a.startswith("Only the owner can use") for a in replies(tg, FRIEND)), replies(tg, FRIEND)
    assert replies(tg, STRANGER) == replies(tg, STRANGER)[:1]  # still only the code: not approved
    assert fake_llm.requests == []
    pairing = PairingStore(tmp_path / "ws" / "pairing")
    assert not pairing.is_approved("telegram", str(STRANGER)) and pairing.snapshot().get("pending")


async def test_a_group_member_cannot_read_the_owners_session_through_tools(tmp_path: Path,
                                                                        fake_llm: FakeLLM) -> None:
    owner_session = "sessions/telegram%3A111.jsonl"

    def answer(rec: Recorded) -> Turn:
        last = _last_text(rec)
        if "tool_result" in last:
            return Turn(text="done")
        if "steal" in last:
            return Turn(tool_calls=[("read_file", {"path": owner_session}),
                                    ("list_dir", {"path": "sessions"}),
                                    ("search_files", {"pattern": "password", "path": "sessions"})])
        return Turn(text="ok")

    fake_llm.responder = answer
    async with FakeTelegram() as tg, Running(tmp_path, fake_llm, tg):
        tg.push_text(OWNER, "my password is hunter2-owner-private")
        await until(lambda: bool(replies(tg, OWNER)))
        tg.push_text(GROUP, "steal the owner's chat", chat_type="supergroup", user_id=MEMBER)
        await until(lambda: bool(replies(tg, GROUP)))
    results = json.dumps(fake_llm.requests[-1].body["messages"][-1])
    assert "hunter2-owner-private" not in results
    assert results.count("private to reverie") == 3, results


@pytest.mark.parametrize("path", [
    "sessions/telegram%3A111.jsonl", "./sessions/x.jsonl", "SESSIONS/x.jsonl", "notes/../sessions/x.jsonl",
    "memory/MEMORY.md", "memory/.git/config", "state/journal.jsonl", "state/seen.jsonl", "cron/jobs.yaml",
    "cron/runs.jsonl", "logs/reverie.log", "pairing/telegram.json", "usage.jsonl", "link-to-sessions/x.jsonl",
    "sessions", "memory",
])
async def test_file_tools_refuse_reveries_private_files(tmp_path: Path, fake_llm: FakeLLM, path: str) -> None:
    async with FakeTelegram() as tg:
        d = build_daemon(access_config(tmp_path, fake_llm, tg))
    ws = d.runtime.workspace
    (ws / "sessions" / "x.jsonl").write_text("{}\n")
    (ws / "link-to-sessions").symlink_to(ws / "sessions")
    base = d.runtime.service.tool_ctx
    ctx = ToolContext(base.workspace, base.config, base.protected, "telegram:-100200")
    for name, args in (("read_file", {"path": path}), ("list_dir", {"path": path}),
                       ("write_file", {"path": path, "content": "x"}), ("edit_file", {"path": path, "old": "{", "new": "x"}),
                       ("search_files", {"pattern": "x", "path": path})):
        result = await d.runtime.tools.run(ToolCall("1", name, args), ctx)
        assert result["is_error"] and "private to reverie" in str(result["content"]), (name, path, result)
    assert (ws / "sessions" / "x.jsonl").read_text() == "{}\n"


def test_sessions_store_what_was_typed_with_secrets_masked(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "sessions", mask=Masker({LLM_KEY}))
    session = store.get("telegram:111")
    typed = Message.user_text(f"my key is {LLM_KEY}")
    session.append(typed, Message("assistant", [{"type": "tool_use", "id": "t1", "name": "remember",
                                                 "input": {"fact": f"key {LLM_KEY}"}}]))
    assert session.messages[0] is typed  # this process's turns keep what the model already saw
    assert SessionStore(tmp_path / "sessions").get("telegram:111").messages[0].text == "my key is ***"
    session.compact(f"They shared {LLM_KEY}", upto=1)
    stored = session.path.read_text()
    assert LLM_KEY not in stored and stored.count("***") == 3
    reloaded = SessionStore(tmp_path / "sessions").get("telegram:111")
    assert reloaded.summary == "They shared ***" and reloaded.messages[0].content[0]["input"]["fact"] == "key ***"
