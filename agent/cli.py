"""The ``reverie`` command. Each subcommand imports what it needs only when it runs, so ``--help`` is fast.

Exit codes: 0 done, 1 the work failed (model error, refused), 2 configuration or usage problem,
130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

Handler = Callable[[argparse.Namespace], int]


def lazy(target: str) -> Handler:
    """A handler that imports ``module:function`` only when its subcommand runs."""

    def handler(args: argparse.Namespace) -> int:
        module, name = target.split(":")
        return int(getattr(importlib.import_module(module), name)(args))

    return handler


_chat, _init = lazy("agent.chat:run_chat"), lazy("agent.initconfig:run_init")
_usage, _config = lazy("agent.initconfig:run_usage"), lazy("agent.initconfig:run_config_check")
_start, _status = lazy("agent.serve:run_start"), lazy("agent.commands:run_status")
_service, _pair = lazy("agent.commands:run_service_install"), lazy("agent.commands:run_pair")
_mcp, _skill = lazy("agent.mcp.cli:run_mcp"), lazy("skills.cli:run_skill")
_memory, _dream = lazy("memory.cli:run_memory"), lazy("memory.cli:run_dream")
_sessions, _cron = lazy("sessions.cli:run_sessions"), lazy("agent.cron.cli:run_cron")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                        help="config file (default: $REVERIE_CONFIG or ~/.reverie/config.yaml)")
    parser = argparse.ArgumentParser(prog="reverie", parents=[common],
                                     description="reverie: a personal AI agent for chat apps and the terminal.")
    parser.add_argument("--version", action="version", version=f"reverie {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    chat = _add(sub, "chat", _chat, common, "talk to the agent in the terminal")
    chat.add_argument("-m", "--message", metavar="TEXT",
                      help="send one message, print the reply, exit ('-' reads stdin)")
    chat.add_argument("--session", default="default", metavar="NAME", help="conversation to use (default: default)")
    chat.add_argument("--model", help="use this model instead of llm.model")
    chat.add_argument("--provider", help="use this provider instead of llm.provider")

    init = _add(sub, "init", _init, common, "write a starter config file")
    init.add_argument("--provider", help="anthropic, openai, openrouter, deepseek, ollama, openai_compatible, ...")
    init.add_argument("--model", help="model name (default: the provider's usual one)")
    init.add_argument("--api-key-env", metavar="VAR", help="write api_key: ${VAR} (the key stays in the environment)")
    init.add_argument("--base-url", help="endpoint for openai_compatible, vllm or ollama")
    init.add_argument("--workspace", help="where reverie keeps its data (default: ~/.reverie)")
    init.add_argument("--yes", "-y", action="store_true", help="do not ask; use flags and defaults")

    start = _add(sub, "start", _start, common, "serve the configured chat channels (foreground; Ctrl-C stops)")
    start.add_argument("--drain-timeout", type=float, default=30.0, metavar="SECONDS",
                       help="on SIGTERM/SIGINT, how long running turns may take to finish (default 30)")
    _add(sub, "status", _status, common, "is the daemon running, its channels, sessions and today's usage")
    service = _add(sub, "service", _service, common, "install a systemd user unit for `reverie start`")
    service.add_argument("action", choices=["install"])
    service.add_argument("--force", action="store_true", help="replace an existing unit file")
    pair = _add(sub, "pair", _pair, common, "approve, list or revoke people who may talk to the bot")
    pair.add_argument("action", choices=["approve", "list", "revoke"])
    pair.add_argument("args", nargs="*", metavar="ARG", help="approve CODE | revoke CHANNEL USER_ID")
    mcp = _add(sub, "mcp", _mcp, common, "list the configured MCP servers and their tools, or call one tool")
    mcp.add_argument("action", choices=["list", "call"])
    mcp.add_argument("args", nargs="*", metavar="ARG", help="call SERVER TOOL ['{\"json\": \"arguments\"}']")
    skill = _add(sub, "skill", _skill, common, "list, show, install, approve or remove skills")
    skill.add_argument("action", choices=["list", "show", "install", "approve", "remove"])
    skill.add_argument("target", nargs="?", metavar="NAME_OR_SOURCE",
                       help="show/approve/remove NAME | install PATH_OR_GIT_URL")
    skill.add_argument("--yes", "-y", action="store_true", help="do not ask before installing or removing")
    skill.add_argument("--force", action="store_true", help="install over an existing skill of the same name")
    _add_memory(sub, common)
    _add_cron(sub, common)
    _add(sub, "usage", _usage, common, "token use and cost, today and this month")
    _add(sub, "config", _config, common, "check the config file and show what it resolves to")
    return parser


def _add_memory(sub: Any, common: argparse.ArgumentParser) -> None:
    """``memory``, ``dream`` and ``sessions``: what reverie remembers and the conversations it read."""
    memory = _add(sub, "memory", _memory, common, "show MEMORY.md, its history and diffs; restore or edit it")
    memory.add_argument("action", choices=["show", "log", "diff", "restore", "edit"])
    memory.add_argument("rev", nargs="?", metavar="REV",
                        help="show [REV] (default: now) | diff [REV] (default: the last commit) | restore REV")
    memory.add_argument("-n", "--limit", type=int, default=20, metavar="N", help="log: how many commits (default 20)")
    _add(sub, "dream", _dream, common, "consolidate new conversations into MEMORY.md now, and show the diff")
    sessions = _add(sub, "sessions", _sessions, common, "list or show conversations; archive old ones")
    sessions.add_argument("action", choices=["list", "show", "archive"])
    sessions.add_argument("key", nargs="?", metavar="KEY", help="show KEY (e.g. telegram:12345)")
    sessions.add_argument("--days", type=float, metavar="N",
                          help="archive: sessions idle for N days (default: sessions.archive_after_days)")


def _add_cron(sub: Any, common: argparse.ArgumentParser) -> None:
    """``cron``: scheduled prompts and reminders."""
    cron = _add(sub, "cron", _cron, common, "add, list, remove, enable, disable or run scheduled jobs; show runs")
    cron.add_argument("action", choices=["add", "list", "remove", "enable", "disable", "run", "log"])
    cron.add_argument("job", nargs="?", metavar="NAME", help="remove/enable/disable/run NAME | log [NAME]")
    cron.add_argument("--name", help="add: the job's name")
    cron.add_argument("--message", metavar="TEXT", help="add: what the agent is asked when the job fires")
    cron.add_argument("--cron", metavar="EXPR", help='add: a crontab schedule, e.g. "0 9 * * *" (0 and 7 = Sunday)')
    cron.add_argument("--every", type=float, metavar="SECONDS", help="add: run every SECONDS (at least 1 second)")
    cron.add_argument("--at", metavar="ISO", help="add: once, e.g. 2026-11-23T17:00, read in --tz (default: local)")
    cron.add_argument("--tz", metavar="ZONE", help="add: time zone, e.g. Europe/Paris (default: local)")
    cron.add_argument("--deliver", metavar="CHANNEL:CHAT",
                      help="add: where the reply goes, e.g. telegram:12345 (default: the owner on the first channel)")
    cron.add_argument("--model", help="add: use this model instead of llm.model")
    cron.add_argument("--disabled", action="store_true", help="add: add the job disabled")
    cron.add_argument("-n", "--limit", type=int, default=20, metavar="N", help="log: how many runs (default 20)")


def _add(sub: Any, name: str, handler: Handler, common: argparse.ArgumentParser, text: str) -> Any:
    command = sub.add_parser(name, parents=[common], help=text, description=text)
    command.set_defaults(handler=handler)
    return command


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("reverie")
    except PackageNotFoundError:
        return "dev"


def main(argv: Sequence[str] | None = None) -> int:
    os.umask(0o077)  # everything reverie writes (sessions, logs, config) is readable by the owner only
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    from agent.errors import ConfigError, ReverieError
    from agent.logs import MASK

    try:
        return int(args.handler(args))
    except ConfigError as exc:
        print(f"reverie: {MASK(str(exc))}", file=sys.stderr)
        return 2
    except ReverieError as exc:
        print(f"reverie: {MASK(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `reverie ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
