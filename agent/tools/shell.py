"""The ``exec`` tool: run a shell command in the workspace. Off unless ``tools.exec.enabled``.

This is a guard rail, not a sandbox. The command runs as the daemon's user with its permissions;
what the tool adds is: the workspace as working directory, an environment reduced to an allowlist
(so API keys in the daemon's environment never reach the command), a timeout that kills the whole
process group, capped output, and a deny list that refuses a few obviously destructive commands.
A determined command can still read anything the user can, so enable it only for a model you trust
with your account, or run reverie itself inside a container.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import time

from agent.config import ExecConfig
from agent.errors import ConfigError, ToolError
from agent.tools.registry import ToolContext, ToolRegistry

ENV_ALLOW = ("PATH", "HOME", "LANG", "TERM", "TZ", "USER")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
_FLAGS = r"(?:\s+-{1,2}[\w-]+)*"
_ROOT_OR_HOME = r"""(?:/|/\*|~|~/|~/\*|\$HOME|\$HOME/|\$HOME/\*|"\$HOME"|\$\{HOME\})"""
DENY: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("rm -r of / or ~", re.compile(
        rf"\brm\b(?=[^;&|\n]*\s(?:-[a-zA-Z]*[rR]|--recursive))[^;&|\n]*\s{_ROOT_OR_HOME}(?=$|[\s;&|])", re.M)),
    ("mkfs", re.compile(r"\bmkfs(?:\.\w+)?\b")),
    ("dd to a device", re.compile(r"\bdd\b[^;&|\n]*\bof=/dev/")),
    ("shutdown/reboot/halt", re.compile(
        r"(?:^|[;&|(`]|\bsudo|\bsystemctl|\bexec)\s*(?:shutdown|reboot|halt|poweroff)\b", re.M)),
    ("fork bomb", re.compile(r":\s*\(\s*\)\s*\{")),
    ("chmod -R 777 /", re.compile(
        rf"\bchmod\b(?=[^;&|\n]*\s-[a-zA-Z]*R)(?=[^;&|\n]*\s0?777\b){_FLAGS}[^;&|\n]*\s/(?=$|[\s;&|*])", re.M)),
    ("write to a disk device", re.compile(r">\s*/dev/(?:sd|hd|vd|xvd|nvme|mmcblk|disk)")),
)


def register(registry: ToolRegistry, config: ExecConfig) -> None:
    """Register ``exec``; an invalid ``tools.exec.deny_patterns`` entry fails here, at startup."""
    for index, pattern in enumerate(config.deny_patterns):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"tools.exec.deny_patterns[{index}] = {pattern!r} is not a valid regular "
                              f"expression ({exc}). Fix or remove it.") from exc
    registry.register(exec_command, name="exec")


def denied(command: str, extra: list[str]) -> str | None:
    """The name of the first deny rule ``command`` matches, or None."""
    for label, regex in DENY:
        if regex.search(command):
            return label
    for pattern in extra:
        if re.search(pattern, command):
            return f"tools.exec.deny_patterns: {pattern}"
    return None


def child_env(config: ExecConfig) -> dict[str, str]:
    """The command's environment: an allowlist of the daemon's, never its API keys."""
    allowed = {*ENV_ALLOW, *config.env_allow}
    env = {k: v for k, v in os.environ.items() if k in allowed or k.startswith("LC_")}
    env.setdefault("PATH", DEFAULT_PATH)
    return env


# The model-facing parameter is called "timeout"; ASYNC109 is about callers' own deadlines.
async def exec_command(ctx: ToolContext, command: str, timeout: float | None = None) -> str:  # noqa: ASYNC109
    """Run a shell command (/bin/sh -c) in the workspace and return its output and exit code.

    stdout and stderr are combined. Background processes are stopped when the command ends.
    This is a guard rail, not a sandbox: the command runs with the daemon user's rights.

    Args:
        command: The shell command line, e.g. "ls -la" or "python3 script.py > out.txt".
        timeout: Seconds before the command is killed; capped by the configured limit.
    """
    config = ctx.config.exec
    if not command.strip():
        raise ToolError("command is empty; give a shell command line.")
    rule = denied(command, config.deny_patterns)
    if rule:
        raise ToolError(f"Refused: the command matches the deny rule '{rule}'. reverie does not run "
                        "destructive system commands; find a narrower command or ask the owner.")
    if timeout is not None and timeout <= 0:
        raise ToolError("timeout must be a positive number of seconds.")
    limit = config.timeout if timeout is None else min(timeout, config.timeout)
    code, output, elapsed = await _run(ctx, command, limit, config.max_output_chars)
    if code is None:
        raise ToolError(f"The command timed out after {elapsed:.1f} s (limit {limit:g} s); it and its child "
                        f"processes were killed. Output so far:\n{output or '(none)'}")
    return f"{output or '(no output)'}\n[exit code {code}]"


async def _run(ctx: ToolContext, command: str, limit: float, max_chars: int) -> tuple[int | None, str, float]:
    """Exit code (None on timeout), capped output and elapsed seconds."""
    started = time.monotonic()
    transport, collector = await asyncio.get_running_loop().subprocess_exec(
        lambda: _Collector(max_chars), "/bin/sh", "-c", command, cwd=ctx.workspace,
        env=child_env(ctx.config.exec), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so one killpg reaches every child
    )
    pid = transport.get_pid()
    try:
        done, _ = await asyncio.wait({collector.exited}, timeout=limit)
        # Leftover background children would outlive the turn and keep the output pipe open.
        _kill_group(pid)
        await asyncio.wait({collector.exited, collector.closed}, timeout=2.0)  # reaped, output drained
        code = transport.get_returncode() if done else None
        return code, collector.text(), time.monotonic() - started
    finally:  # also on cancellation
        _kill_group(pid)
        transport.close()


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class _Collector(asyncio.SubprocessProtocol):
    """Keeps the head and tail of the output; says when the process exits and when its pipe closes.

    ``Process.wait()`` would also wait for the pipe, which a background child can hold open.
    """

    def __init__(self, max_chars: int) -> None:
        loop = asyncio.get_running_loop()
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.half = max_chars // 2
        self.head, self.tail, self.total = bytearray(), bytearray(), 0

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        chunk = data.encode() if isinstance(data, str) else data
        self.total += len(chunk)
        room = self.half - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        self.tail += chunk
        del self.tail[:-self.half]

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def text(self) -> str:
        text = self.head.decode("utf-8", errors="replace")
        cut = self.total - len(self.head) - len(self.tail)
        if cut > 0:
            text += f"\n[... {cut} bytes of output cut ...]\n"
        return (text + self.tail.decode("utf-8", errors="replace")).rstrip("\n")
