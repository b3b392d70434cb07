"""Daemon-side commands: ``status``, ``service install`` and ``pair``."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.chat import load_from_args
from agent.errors import ReverieError
from agent.lock import running_pid

UNIT = """\
[Unit]
Description=reverie, a personal AI agent
After=network-online.target
Wants=network-online.target

[Service]
ExecStart={exe} start{config}
Restart=on-failure
RestartSec=5
KillSignal=SIGTERM
TimeoutStopSec=90

[Install]
WantedBy=default.target
"""


def run_status(args: argparse.Namespace) -> int:
    from agent.service import usage_text
    from agent.usage import UsageLog

    config, _ = load_from_args(args, need_model=False)
    workspace = config.workspace_path
    pid = running_pid(workspace)
    print(f"reverie is {'running (pid ' + str(pid) + ')' if pid else 'not running'} for {workspace}")
    status = _read_status(workspace / "state" / "status.json")
    if status and pid:
        for label, state in status.get("channels", {}).items():
            print(f"  {label}: {_channel_line(state)}")
        for name, mcp in (status.get("mcp") or {}).items():
            error = f" (last error: {mcp.get('error')})" if mcp.get("error") and mcp.get("state") != "up" else ""
            print(f"  MCP {name}: {mcp.get('state')}, {mcp.get('tools', 0)} tools{error}")
        print(f"  active turns: {status.get('active_turns', 0)}; status written {_ago(status.get('updated'))}")
    sessions = workspace / "sessions"
    count = len([p for p in sessions.glob("*.jsonl") if ".corrupt-" not in p.name]) if sessions.is_dir() else 0
    print(f"  sessions on disk: {count}")
    print("  " + usage_text(UsageLog(workspace / "usage.jsonl", config.llm)))
    return 0


def _read_status(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _channel_line(state: dict[str, Any]) -> str:
    word = "connected" if state.get("connected") else "down"
    last = state.get("last_message")
    parts = [word, f"last message {_ago(last)}" if last else "no messages yet"]
    if state.get("last_error") and not state.get("connected"):
        parts.append(f"last error: {state['last_error']}")
    return "; ".join(parts)


def _ago(when: object) -> str:
    if not isinstance(when, int | float):
        return "never"
    seconds = max(0, int(time.time() - when))
    return f"{seconds} s ago" if seconds < 120 else f"at {datetime.fromtimestamp(when):%Y-%m-%d %H:%M}"


def run_service_install(args: argparse.Namespace) -> int:
    exe = shutil.which("reverie") or f"{sys.executable} -m agent.cli"
    config = getattr(args, "config", None)
    unit = UNIT.format(exe=exe, config=f" --config {Path(config).expanduser().resolve()}" if config else "")
    path = Path("~/.config/systemd/user/reverie.service").expanduser()
    if path.exists() and not args.force:
        print(f"reverie: {path} already exists; pass --force to replace it.", file=sys.stderr)
        return 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(unit, encoding="utf-8")
    print(f"Wrote {path}. Enable and start it with:\n"
          "  systemctl --user daemon-reload\n"
          "  systemctl --user enable --now reverie\n"
          "(To keep it running after you log out: loginctl enable-linger $USER)")
    return 0


def run_pair(args: argparse.Namespace) -> int:
    from channels.access import PairingStore

    config, _ = load_from_args(args, need_model=False)
    store = PairingStore(config.workspace_path / "pairing")
    if args.action == "approve":
        if len(args.args) != 1:
            raise ReverieError("Usage: reverie pair approve CODE")
        entry = store.approve(args.args[0])
        print(f"Approved {entry.get('name') or entry['sender']} ({entry['sender']}) on {entry['channel']}.")
    elif args.action == "revoke":
        if len(args.args) != 2:
            raise ReverieError("Usage: reverie pair revoke CHANNEL USER_ID")
        if not store.revoke(*args.args):
            raise ReverieError(f"{args.args[1]} is not approved on {args.args[0]}; `reverie pair list` shows who is.")
        print(f"Revoked {args.args[1]} on {args.args[0]}.")
    else:
        _print_pairing(store.snapshot())
    return 0


def _print_pairing(data: dict[str, object]) -> None:
    approved = data.get("approved") or {}
    pending = data.get("pending") or {}
    assert isinstance(approved, dict) and isinstance(pending, dict)
    print("Approved:" if any(approved.values()) else "Approved: nobody yet")
    for channel, people in approved.items():
        for sender, info in people.items():
            print(f"  {channel} {sender} {info.get('name', '')}".rstrip())
    live = {code: p for code, p in pending.items() if p.get("expires", 0) > time.time()}
    print("Pending codes:" if live else "Pending codes: none")
    for code, p in live.items():
        print(f"  {code}  {p['channel']} {p['sender']} {p.get('name', '')}  expires {_ago(p['expires'])}")
