"""How reverie reaches one MCP server: stdio through the launcher, streamable HTTP, or SSE.

    async with open_transport(entry, workspace) as (read, write):
        async with ClientSession(read, write) as session: ...

stdio servers are started through ``launcher.py`` (see there) so they die with reverie, even on
SIGKILL, and see exactly the entry's ``env`` plus PATH, HOME, the locale and TZ; their stderr is
appended to ``<workspace>/logs/mcp-<name>.log``. HTTP servers get the entry's ``headers`` on
every request. The SDK is imported here, and this module only when an MCP server is configured.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator, Callable, MutableSequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from agent.config import MCPServer
from agent.errors import ToolError
from agent.mcp.naming import safe_file_name

if TYPE_CHECKING:
    from mcp.client._transport import TransportStreams

LAUNCHER = Path(__file__).with_name("launcher.py")
PASSED_ON = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ")  # plus every LC_* variable
LOG_ROTATE_BYTES = 1_000_000
HTTP_READ_TIMEOUT = 300.0  # the server may hold an event stream open this long between events


def server_env(entry: MCPServer, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Exactly what a stdio server sees: PATH, HOME, locale and TZ from reverie, then the entry's env.

    Nothing else passes: reverie's own API keys must not reach a server nobody gave them to.
    """
    source = os.environ if environ is None else environ
    inherited = {k: v for k, v in source.items() if k in PASSED_ON or k.startswith("LC_")}
    return inherited | entry.env


def log_path(entry: MCPServer, workspace: Path) -> Path:
    return workspace / "logs" / f"mcp-{safe_file_name(entry.name)}.log"


def server_cwd(entry: MCPServer, workspace: Path) -> Path:
    """The entry's ``cwd`` (relative to the workspace), else the workspace."""
    return workspace / Path(entry.cwd).expanduser() if entry.cwd else workspace


def check_command(entry: MCPServer, env: dict[str, str], cwd: Path | None = None) -> str:
    """The command, or a ToolError saying it cannot be found (clearer than a dead launcher).

    A command with a slash but no leading one is relative to the server's ``cwd``, as it runs there.
    """
    command = entry.command or ""
    found = shutil.which(command, path=env.get("PATH", os.defpath)) if os.sep not in command else None
    if found is None and not (os.sep in command and os.access((cwd or Path.cwd()) / command, os.X_OK)):
        raise ToolError(f"the command {command!r} was not found on PATH or is not executable; "
                        f"fix mcp_servers[{entry.name}].command")
    return command


def open_log(path: Path) -> TextIO:
    """The stderr log, append-only and owner-only, rotated once it passes LOG_ROTATE_BYTES."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_size > LOG_ROTATE_BYTES:
            path.replace(path.with_name(path.name + ".1"))
    log = open(path, "a", buffering=1, opener=lambda p, flags: os.open(p, flags, 0o600))
    log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting ---\n")
    return log


def last_line(path: Path, start: int) -> str:
    """The last non-empty line the server wrote to its log since byte ``start``."""
    try:
        with path.open("rb") as f:
            f.seek(start)
            lines = f.read()[-4000:].decode(errors="replace").splitlines()
    except OSError:
        return ""
    lines = [line.strip() for line in lines if line.strip() and not line.startswith("--- ")]
    return lines[-1][:300] if lines else ""


@contextlib.asynccontextmanager
async def open_transport(entry: MCPServer, workspace: Path, http_errors: MutableSequence[str] | None = None,
                         on_lost: Callable[[], None] | None = None) -> AsyncIterator[TransportStreams]:
    """The server's (read, write) streams. HTTP error statuses are noted in ``http_errors``;
    ``on_lost`` is called when a streamable HTTP server no longer knows our session (it restarted)."""
    if entry.transport == "stdio":
        async with _stdio(entry, workspace) as streams:
            yield streams
    elif entry.transport == "http":
        async with _http(entry, [] if http_errors is None else http_errors, on_lost) as streams:
            yield streams
    else:
        from mcp.client.sse import sse_client

        async with sse_client(entry.url or "", headers=dict(entry.headers), timeout=entry.timeout,
                              sse_read_timeout=HTTP_READ_TIMEOUT) as streams:
            yield streams


@contextlib.asynccontextmanager
async def _stdio(entry: MCPServer, workspace: Path) -> AsyncIterator[TransportStreams]:
    from mcp import StdioServerParameters, stdio_client

    env = server_env(entry)
    cwd = server_cwd(entry, workspace)
    command = [check_command(entry, env, cwd), *entry.args]
    if sys.platform != "win32":  # the SDK puts Windows servers in a Job object instead
        keep = ",".join(sorted(env))
        command = [sys.executable, "-I", str(LAUNCHER), "--parent", str(os.getpid()), "--keep", keep,
                   "--", *command]
    params = StdioServerParameters(command=command[0], args=command[1:], env=env, cwd=cwd)
    with open_log(log_path(entry, workspace)) as log:
        async with stdio_client(params, errlog=log) as streams:
            yield streams


@contextlib.asynccontextmanager
async def _http(entry: MCPServer, errors: MutableSequence[str],
                on_lost: Callable[[], None] | None) -> AsyncIterator[TransportStreams]:
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    async def note(response: httpx2.Response) -> None:
        # The SDK reports any error status as "Server returned an error response"; keep which one.
        if response.status_code >= 400:
            hint = f"; check mcp_servers[{entry.name}].headers" if response.status_code in (401, 403) else ""
            errors.append(f"HTTP {response.status_code} {response.reason_phrase}{hint}")
        # Per the spec, a 404 to a request carrying a session id means that session is gone: start anew.
        if response.status_code == 404 and "mcp-session-id" in response.request.headers and on_lost:
            on_lost()

    timeout = httpx2.Timeout(entry.timeout, read=max(entry.timeout, HTTP_READ_TIMEOUT))
    async with httpx2.AsyncClient(headers=dict(entry.headers), timeout=timeout,
                                  event_hooks={"response": [note]}) as client:
        async with streamable_http_client(entry.url or "", http_client=client) as streams:
            yield streams
