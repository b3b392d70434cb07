"""``reverie chat``: the runtime plus the terminal channel, interactive or one-shot (``-m``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Any

from agent.config import Config
from agent.config_file import load_config
from agent.errors import ConfigError


def load_from_args(args: argparse.Namespace, *, need_model: bool = True) -> tuple[Config, Path | None]:
    from agent.config_file import default_config_path

    path = getattr(args, "config", None)
    config = load_config(path, need_model=need_model)
    file = Path(path).expanduser() if path else default_config_path()
    return config, (file if file.exists() else None)


def run_chat(args: argparse.Namespace) -> int:
    from agent.daemon import build_runtime
    from agent.logs import setup_logging

    config, path = load_from_args(args)
    message = args.message
    if message == "-":
        message = sys.stdin.read()
    if message is not None and not message.strip():
        raise ConfigError("The message is empty. Pass text with -m \"...\" or pipe it in with -m -.")
    runtime = build_runtime(config, path, model=args.model, provider=args.provider)
    setup_logging(runtime.workspace, config.secrets(), level=config.logging.level,
                  max_bytes=config.logging.max_bytes, backups=config.logging.backups)
    return asyncio.run(_chat(runtime, args.session, message))


async def _chat(runtime: object, session: str, message: str | None) -> int:
    from agent.daemon import Runtime
    from channels.terminal import TerminalChannel

    assert isinstance(runtime, Runtime)
    plain = not sys.stdout.isatty()
    interactive_input = sys.stdin.isatty() and not plain
    terminal = TerminalChannel(runtime.bus, session, plain=plain,
                               history_file=runtime.workspace / "chat_history" if interactive_input else None)
    async with runtime.running():
        await terminal.start()
        try:
            if message is not None:
                await terminal.ask(message)
                return await _children(runtime, terminal)
            return await terminal.repl()
        finally:
            _abandon(runtime)
            await terminal.stop()


async def _children(runtime: Any, terminal: Any) -> int:
    """One-shot chat: wait for the subagents this message started, and the answers their reports bring."""
    key = terminal.session_key
    while len(terminal.finals) < 1 + runtime.subagents.spawned[key]:  # each child's report brings one answer
        terminal.answered.clear()
        with contextlib.suppress(TimeoutError):  # re-check now and then: a report may land between checks
            await asyncio.wait_for(terminal.answered.wait(), 0.5)
    return 0 if terminal.finals[-1] == "reply" else 1


def _abandon(runtime: Any) -> None:
    """Leaving the chat stops the subagents still working; there is nobody left to report to."""
    working = runtime.subagents.stop()
    if working:
        print(f"Stopped {working} subagent(s) that were still working.", file=sys.stderr)
