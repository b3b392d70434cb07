"""One MCP server over its whole life: start, watch, call, restart with backoff, stop.

    conn = Connection(entry, workspace, on_tools=lambda c: print(c.tools))
    await conn.start()                      # up or down when it returns; never raises
    result = await conn.call("echo", {"text": "hi"})   # a CallToolResult, or ToolError
    await conn.aclose()

A supervisor task owns the connection: it enters the transport and the ``ClientSession``, and it
leaves them, in the same task (anyio requires it), once per attempt. Start-up is bounded by the
entry's ``timeout``. A server that failed to start is retried in the background after 1, 2, 5,
10, 30, 60, 120, then every 300 s (counted from the previous start). A server that died after
being up is restarted by the next call, no sooner than the same schedule (at most 60 s) allows; a
call before then is told when. A call is bounded by ``timeout`` and is never retried: tools can
have side effects; a server that then does not answer a ping either is restarted on next use, as is
a streamable HTTP server that no longer knows our session (HTTP 404: it restarted).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio

from agent.config import MCPServer
from agent.errors import ToolError
from agent.logs import Masker
from agent.mcp.transport import last_line, log_path, open_transport

if TYPE_CHECKING:
    from mcp import ClientSession
    from mcp.client.session import IncomingMessage
    from mcp_types import CallToolResult, Tool

logger = logging.getLogger(__name__)

State = Literal["up", "down", "starting"]
BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
ON_USE_CAP = 60.0  # a restart asked for by a call waits at most this long
HEALTHY_AFTER = 60.0  # a server that ran this long before dying starts the schedule over
MAX_PAGES = 100  # of tools/list, against a server that hands out cursors forever
LOST_SESSION = "lost our session (it probably restarted)"
NOT_RETRIED = "the call was not retried because tools can have side effects"


class Connection:
    """The client side of one configured MCP server."""

    def __init__(self, entry: MCPServer, workspace: Path, on_tools: Callable[[Connection], None],
                 backoff: tuple[float, ...] = BACKOFF) -> None:
        self.entry = entry
        self.workspace = workspace
        self.state: State = "down"
        self.error: str | None = None
        self.tools: list[Tool] = []  # as last listed by the server
        self.retry_at: float | None = None  # event-loop time of the next allowed start
        self._on_tools = on_tools
        self._backoff = backoff or (0.0,)
        self._session: ClientSession | None = None
        self._scope: anyio.CancelScope | None = None
        self._task: asyncio.Task[None] | None = None
        self._gone = asyncio.Event()  # the current session must end: the server left, or we are closing
        self._wanted = asyncio.Event()  # a call wants a restart, or we are closing
        self._settled = asyncio.Event()  # the current attempt ended up or down
        self._idle = asyncio.Event()  # no attempt is running (not even winding down)
        self._closing = False
        self._ended: str | None = None  # why we ended a live session (it hung, or lost our session)
        self._dirty = self._refreshing = False  # tools/list_changed: one refresher, re-listing until clean
        self._mask = Masker(entry.secrets())  # its own values: `reverie mcp` may not have set up logging
        self._been_up = False
        self._failures = 0
        self._started_at = 0.0

    @property
    def name(self) -> str:
        return self.entry.name

    async def start(self) -> None:
        """Start the supervisor and wait until the server is up or down (at most ``timeout``)."""
        if self._task is None:
            self._settled.clear()
            self._task = asyncio.create_task(self._supervise(), name=f"mcp server {self.name}")
        await self._settled.wait()

    async def aclose(self) -> None:
        """Stop the server (its whole process group) and the supervisor. Idempotent."""
        self._closing = True
        self._gone.set()
        self._wanted.set()
        if self._scope is not None and self.state == "starting":
            self._scope.cancel()
        if self._task is not None:
            # An HTTP server may never answer the session's DELETE: wait a little, then give up on it.
            done, _ = await asyncio.wait({self._task}, timeout=5.0)
            if not done and self._scope is not None:
                self._scope.cancel()
            await asyncio.shield(self._task)  # our caller's cancellation must not cut the kill sequence short
        self.state, self.error = "down", "stopped"

    async def call(self, tool: str, arguments: dict[str, Any]) -> CallToolResult:
        """Call ``tool`` once; ToolError says why when the server is down, fails or is too slow."""
        from mcp import MCPError
        from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        session = await self._ready_session()
        timeout = self.entry.timeout
        try:
            with anyio.fail_after(timeout + 5):  # the SDK's timeout covers the answer, this the sending too
                return await session.call_tool(tool, arguments, read_timeout_seconds=timeout)
        except TimeoutError as exc:
            await self._check_alive(session)
            raise ToolError(self._too_slow()) from exc
        except MCPError as exc:
            # Only the SDK's own timeout and closure; a server may send these codes for its own reasons.
            if exc.code == REQUEST_TIMEOUT and exc.message == "Request 'tools/call' timed out":
                await self._check_alive(session)
                raise ToolError(self._too_slow()) from exc
            if self._ended == LOST_SESSION:
                raise ToolError(f"The MCP server {self.name} {LOST_SESSION}; the call was not run. "
                                "It will be reconnected when one of its tools is used again.") from exc
            if (exc.code == CONNECTION_CLOSED and exc.message == "Connection closed") or self._gone.is_set():
                self._gone.set()
                raise ToolError(f"The MCP server {self.name} stopped in the middle of the call; {NOT_RETRIED}. "
                                "It will be restarted when one of its tools is used again.") from exc
            raise ToolError(self._mask(f"The MCP server {self.name} refused the call: {exc.message}")) from exc
        except (RuntimeError, ValueError) as exc:  # a result that does not match the tool's output schema
            raise ToolError(self._mask(f"The MCP server {self.name} returned an unusable result: {exc}")) from exc

    async def _check_alive(self, session: ClientSession) -> None:
        """After a call timed out: a server that does not answer a ping either is restarted on next use."""
        try:
            with anyio.fail_after(min(5.0, self.entry.timeout)):
                await session.send_ping()
        except TimeoutError:
            logger.warning("MCP server %s answers neither a call nor a ping; it will be restarted", self.name)
            self._ended = "it stopped answering (a call and a ping timed out)"
            self._gone.set()
        except Exception:  # it answered (with an error), or it is already gone
            pass

    def _too_slow(self) -> str:
        return f"The MCP server {self.name} did not answer within {self.entry.timeout:g} s; {NOT_RETRIED}."

    # --- the supervisor ---------------------------------------------------------------------------

    async def _supervise(self) -> None:
        try:
            while not self._closing:
                self._wanted.clear()
                self._idle.clear()
                await self._attempt()
                self._idle.set()
                if self._closing:
                    return
                if self._been_up:
                    await self._wanted.wait()  # restarted by the next call (see _ready_session)
                else:
                    wait = (self.retry_at or 0.0) - asyncio.get_running_loop().time()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wanted.wait(), max(0.0, wait))
        except Exception:  # supervision boundary: a bug here must not take the daemon down
            logger.exception("The supervisor of MCP server %s failed", self.name)
            self.state, self.error = "down", "internal error (see the log)"
        finally:
            self._settled.set()
            self._idle.set()

    async def _attempt(self) -> None:
        """One session, from spawn to exit; records why it ended."""
        loop = asyncio.get_running_loop()
        self.state, self._started_at = "starting", loop.time()
        self._settled.clear()
        self._gone.clear()
        self._ended = None
        watchdog = loop.call_later(self.entry.timeout, self._start_timed_out)
        log, log_start = log_path(self.entry, self.workspace), _size(log_path(self.entry, self.workspace))
        http_errors: deque[str] = deque(maxlen=1)
        reason: str | None
        try:
            with anyio.CancelScope() as self._scope:
                await self._session_lifetime(watchdog, http_errors)
            reason = self._why_ended(log, log_start)
        except Exception as exc:  # supervision boundary: any failure marks the server down
            stderr = last_line(log, log_start) if self.entry.transport == "stdio" else ""
            reason = _describe(exc, f"its last words: {stderr}" if stderr else "; ".join(http_errors))
        finally:
            watchdog.cancel()
            self._session = self._scope = None
        if self._closing:
            self.state = "down"
        elif self.state != "down":  # else the watchdog already said why
            self._mark_down(reason or "it stopped")

    async def _session_lifetime(self, watchdog: asyncio.TimerHandle, http_errors: deque[str]) -> None:
        from mcp import ClientSession
        from mcp_types import Implementation

        async with open_transport(self.entry, self.workspace, http_errors, self._lost) as (read, write):
            watched = _Watched(read, self._gone.set)
            async with ClientSession(watched, write, message_handler=self._on_message,
                                     client_info=Implementation(name="reverie", version="1")) as session:
                await session.initialize()
                tools = await _list_tools(session)
                if self.state != "starting":  # the watchdog fired while the last answer was on its way
                    return
                watchdog.cancel()
                self._session, self.tools, self.error, self._dirty = session, tools, None, False
                self.state, self._been_up = "up", True
                self._settled.set()
                logger.info("MCP server %s is up with %d tools", self.name, len(tools))
                self._on_tools(self)
                await self._gone.wait()

    def _lost(self) -> None:
        if self.state == "up" and not self._closing:
            self._ended = LOST_SESSION
            self._gone.set()

    def _why_ended(self, log: Path, log_start: int) -> str | None:
        if self._closing or self.state == "down":
            return None
        if self._ended:
            return self._ended
        if self.entry.transport != "stdio":
            return "the connection was lost"
        words = last_line(log, log_start)
        ended = "it exited" if self.state == "up" else "it exited during start-up"
        return ended + (f" (its last words: {words})" if words else "")

    def _start_timed_out(self) -> None:
        if self.state == "starting":
            self._mark_down(f"it did not finish starting within {self.entry.timeout:g} s")
            if self._scope is not None:
                self._scope.cancel()

    def _mark_down(self, reason: str) -> None:
        reason = self._mask(reason)
        self.state, self.error = "down", reason
        self.retry_at = self._started_at + self._next_delay()
        self._settled.set()
        where = f" (its stderr is in {log_path(self.entry, self.workspace)})" if self.entry.transport == "stdio" else ""
        logger.warning("MCP server %s is down: %s%s", self.name, reason, where)

    def _next_delay(self) -> float:
        ran = asyncio.get_running_loop().time() - self._started_at
        if ran >= HEALTHY_AFTER:
            self._failures = 0
        delay = self._backoff[min(self._failures, len(self._backoff) - 1)]
        self._failures += 1
        return min(delay, ON_USE_CAP) if self._been_up else delay

    # --- calls and notifications --------------------------------------------------------------------

    async def _ready_session(self) -> ClientSession:
        """The live session, restarting a dead server if its backoff allows; else ToolError."""
        if self._closing or self._task is None or self._task.done():
            raise ToolError(f"The MCP server {self.name} is not running (reverie is starting or stopping).")
        if self.state == "up" and self._gone.is_set():
            await self._idle.wait()  # it just died: wait for the attempt to wind down, then restart it
        if self.state == "down":
            wait = (self.retry_at or 0.0) - asyncio.get_running_loop().time()
            if wait > 0:
                raise ToolError(f"The MCP server {self.name} is down ({self.error}); reverie will try to "
                                f"start it again in {math.ceil(wait)} s.")
            await self._idle.wait()  # the last attempt has wound down (its process is gone)
            if self.state == "down" and not self._closing:  # else another call got here first
                self.state = "starting"  # now, so this call waits for the new attempt and not the last one
                self._settled.clear()
                self._wanted.set()
        await self._settled.wait()
        if self.state != "up" or self._session is None:
            raise ToolError(f"The MCP server {self.name} is down ({self.error}).")
        return self._session

    async def _on_message(self, message: IncomingMessage) -> None:
        if getattr(message, "method", None) == "notifications/tools/list_changed" and self._session:
            await self._refresh_tools(self._session)
        elif isinstance(message, Exception):
            logger.debug("MCP server %s transport error: %r", self.name, message)


    async def _refresh_tools(self, session: ClientSession) -> None:
        """List the tools again, and again while more changes arrive, so the last answer is the newest."""
        self._dirty = True
        if self._refreshing:
            return  # the running refresher lists once more
        self._refreshing = True
        try:
            with anyio.fail_after(self.entry.timeout):
                while self._dirty:
                    self._dirty = False
                    tools = await _list_tools(session)
        except Exception as exc:  # the server went away or is too slow; it is restarted on next use
            logger.warning("MCP server %s changed its tools but did not list them: %s", self.name, _describe(exc))
            return
        finally:
            self._refreshing = False
        if session is self._session:
            self.tools = tools
            logger.info("MCP server %s changed its tools; it now has %d", self.name, len(tools))
            self._on_tools(self)


async def _list_tools(session: ClientSession) -> list[Tool]:
    from mcp_types import PaginatedRequestParams

    tools: list[Tool] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        page = await session.list_tools(params=PaginatedRequestParams(cursor=cursor) if cursor else None)
        tools += page.tools
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


def _describe(exc: BaseException, detail: str = "") -> str:
    """A person-readable reason from an SDK, network or OS failure (never headers or env values)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    # By name: this must work even when the SDK itself failed to import.
    message = getattr(exc, "message", None) if type(exc).__name__ == "MCPError" else None
    if isinstance(exc, ToolError):
        text = str(exc)
    elif isinstance(exc, ImportError):
        text = f"the MCP SDK could not be imported ({exc}); install it with: pip install 'mcp>=2.3,<3'"
    elif message == "Connection closed":
        text = "it exited during start-up"
    elif type(exc).__name__ == "HTTPStatusError" and hasattr(exc, "response"):  # str() has the URL
        text = f"HTTP {exc.response.status_code} {exc.response.reason_phrase}"
    elif isinstance(exc, OSError):
        text = f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}"
    else:
        text = f"{message or str(exc) or type(exc).__name__}"
    return f"{text} ({detail})" if detail else text


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class _Watched:
    """The transport's read stream, telling ``on_end`` when it ends (a stdio server exited)."""

    def __init__(self, stream: Any, on_end: Callable[[], None]) -> None:
        self._stream, self._on_end = stream, on_end

    @property
    def last_context(self) -> Any:  # the dispatcher copies the sender's contextvars from here
        return getattr(self._stream, "last_context", None)

    async def receive(self) -> Any:
        try:
            return await self._stream.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._on_end()
            raise

    async def aclose(self) -> None:
        await self._stream.aclose()

    def __aiter__(self) -> _Watched:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> _Watched:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
