"""A scripted stand-in for the Anthropic and OpenAI HTTP APIs, served on 127.0.0.1.

Point the real SDKs at it::

    async with FakeLLM() as fake:
        fake.script(Turn(text="hi"), Fail(529), Turn(tool_calls=[("get_time", {"tz": "UTC"})]))
        anthropic.AsyncAnthropic(api_key="sk-fake", base_url=fake.url)
        openai.AsyncOpenAI(api_key="sk-fake", base_url=fake.openai_url)

Each request to ``POST /v1/messages`` or ``POST /v1/chat/completions`` is recorded in ``requests``
and answered by the next scripted step (FIFO), else ``responder(recorded)``, else ``default``.
The server is a minimal HTTP/1.1 implementation on ``asyncio.start_server``: keep-alive,
Content-Length (or chunked) request bodies, Content-Length JSON replies and chunked SSE replies.

Run standalone for benchmarks: ``python -m tests.fakes.llm --port 0 --reply TEXT`` prints
``READY http://127.0.0.1:PORT`` once listening and exits on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any

from tests.fakes.llm_wire import JSON, AnthropicWire, OpenAIWire, Wire, dumps


@dataclass
class Turn:
    """One scripted model answer."""

    text: str = ""
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (name, arguments)
    stop: str | None = None  # override stop/finish reason: "max_tokens", "refusal", "pause_turn", "length"
    usage: tuple[int, int, int, int] = (10, 5, 0, 0)  # input, output, cache_read, cache_write
    reasoning: str = ""  # OpenAI only: delta.reasoning_content before the text (DeepSeek quirk)
    omit_tool_ids: bool = False  # OpenAI only: tool call deltas without "id"
    chunk: int = 8  # characters per text / argument delta


@dataclass
class Fail:
    """An HTTP error response."""

    status: int = 529
    error_type: str = "overloaded_error"
    message: str = "Overloaded"
    retry_after_ms: int | None = 1  # sent as retry-after-ms; keeps SDK retry sleeps tiny


@dataclass
class StreamError:
    """A stream that starts, sends partial text, then fails (non-stream requests get a truncated body)."""

    partial: str = "Partial"
    error_type: str = "overloaded_error"
    drop: bool = False  # True: close the connection mid-stream instead of sending an error event


@dataclass
class Delay:
    """Wait before answering (to trigger client timeouts), then answer ``then`` (or ``default``)."""

    seconds: float
    then: Turn | None = None


@dataclass
class ErrorIn200:
    """OpenAI-compatible quirk: HTTP 200 whose JSON body (or first SSE data) is ``{"error": {...}}``."""

    message: str = "upstream failure"


Step = Turn | Fail | StreamError | Delay | ErrorIn200


@dataclass
class Recorded:
    api: str  # "anthropic" | "openai"
    path: str
    headers: dict[str, str]  # lower-cased names
    body: JSON  # parsed JSON ({} when the body is not a JSON object)
    raw: bytes


@dataclass
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    raw: bytes

    @property
    def keep_alive(self) -> bool:
        return self.headers.get("connection", "").lower() != "close"


@dataclass
class _Exchange:
    """One request on one connection."""

    req: _Request
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    @property
    def client_gone(self) -> bool:
        return self.reader.at_eof() or self.writer.transport.is_closing()

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()


_APIS: dict[str, tuple[str, type[AnthropicWire] | type[OpenAIWire]]] = {
    "/v1/messages": ("anthropic", AnthropicWire),
    "/v1/chat/completions": ("openai", OpenAIWire),
}


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    """Read one HTTP/1.1 request; None on a clean close between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            key, value = name.strip().lower(), value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raw = await _read_chunked(reader)
    else:
        raw = await reader.readexactly(int(headers.get("content-length") or 0))
    return _Request(method, target.split("?", 1)[0], headers, raw)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers expected
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


def _head(status: int, headers: dict[str, str]) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Overloaded" if status == 529 else "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _chunked(events: list[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events if e)


class FakeLLM:
    """Scripted Anthropic + OpenAI server. See the module docstring."""

    def __init__(self, *, port: int = 0) -> None:
        self.port = port
        self.url = ""
        self.requests: list[Recorded] = []
        self.responder: Callable[[Recorded], Step] | None = None
        self.default: Step = Turn(text="ok")
        self._queue: deque[Step] = deque()
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    @property
    def openai_url(self) -> str:
        return f"{self.url}/v1"

    async def start(self) -> FakeLLM:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, limit=1 << 20)
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        conns = list(self._conns)
        for task in conns:
            task.cancel()
        await asyncio.gather(*conns, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> FakeLLM:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def script(self, *steps: Step) -> None:
        """Queue steps; each request consumes one, in order."""
        self._queue.extend(steps)

    @property
    def pending(self) -> int:
        """How many scripted steps are still unconsumed."""
        return len(self._queue)

    def bodies(self, api: str | None = None) -> list[JSON]:
        return [r.body for r in self.requests if api is None or r.api == api]

    def _next_step(self, rec: Recorded) -> Step:
        if self._queue:
            return self._queue.popleft()
        if self.responder is not None:
            return self.responder(rec)
        return self.default

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            while (req := await _read_request(reader)) is not None:
                if not await self._handle(_Exchange(req, reader, writer)) or not req.keep_alive:
                    break
            writer.close()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            writer.transport.abort()
        except asyncio.CancelledError:
            writer.transport.abort()  # stop(): swallowed so start_server's done-callback does not log it
        finally:
            self._conns.discard(task)

    async def _handle(self, ex: _Exchange) -> bool:
        """Answer one request. Returns False when the connection must be closed."""
        req = ex.req
        route = _APIS.get(req.path)
        if route is None or req.method != "POST":
            body = {
                "type": "error",
                "error": {"type": "not_found_error", "message": f"{req.method} {req.path}"},
            }
            await self._send_json(ex, 404, body)
            return True
        api, wire_cls = route
        try:
            parsed = json.loads(req.raw) if req.raw else {}
        except ValueError:
            parsed = {}
        body = parsed if isinstance(parsed, dict) else {}
        rec = Recorded(api=api, path=req.path, headers=req.headers, body=body, raw=req.raw)
        self.requests.append(rec)
        wire = wire_cls(len(self.requests), body)
        return await self._play(self._next_step(rec), wire, bool(body.get("stream")), ex)

    async def _play(self, step: Step, wire: Wire, stream: bool, ex: _Exchange) -> bool:
        while isinstance(step, Delay):
            await asyncio.sleep(step.seconds)
            step = step.then if step.then is not None else self.default
        if ex.client_gone:
            return False  # the client gave up (timeout) while we were delaying
        if isinstance(step, Fail):
            extra = {} if step.retry_after_ms is None else {"retry-after-ms": str(step.retry_after_ms)}
            await self._send_json(ex, step.status, wire.error_body(step.error_type, step.message), extra)
        elif isinstance(step, ErrorIn200):
            if stream:
                await self._send_sse(ex, wire.error_in_200_stream(step.message))
            else:
                await self._send_json(ex, 200, wire.error_in_200(step.message))
        elif isinstance(step, StreamError):
            return await self._stream_error(step, wire, stream, ex)
        elif stream:
            await self._send_sse(ex, wire.stream(step))
        else:
            await self._send_json(ex, 200, wire.message(step))
        return True

    async def _stream_error(self, step: StreamError, wire: Wire, stream: bool, ex: _Exchange) -> bool:
        if not stream:  # promise a body, deliver half of it, hang up
            data = dumps(wire.message(Turn(text=step.partial))).encode()
            await ex.send(self._json_head(ex.req, 200, len(data)) + data[: len(data) // 2])
            ex.writer.transport.abort()
            return False
        events = wire.partial(step.partial)
        if step.drop:  # no terminating zero-length chunk: the client sees an incomplete body
            await ex.send(self._sse_head(ex.req) + _chunked(events))
            ex.writer.transport.abort()
            return False
        await self._send_sse(ex, events + wire.stream_error(step.error_type, "Stream failed"))
        return True

    def _json_head(self, req: _Request, status: int, length: int, extra: dict[str, str] | None = None) -> bytes:
        headers = {"content-type": "application/json", "content-length": str(length), **self._common(req)}
        return _head(status, {**headers, **(extra or {})})

    def _sse_head(self, req: _Request) -> bytes:
        headers = {
            "content-type": "text/event-stream",
            "cache-control": "no-cache",
            "transfer-encoding": "chunked",
        }
        return _head(200, {**headers, **self._common(req)})

    def _common(self, req: _Request) -> dict[str, str]:
        headers = {"request-id": f"req_fake_{len(self.requests):04d}"}
        if not req.keep_alive:
            headers["connection"] = "close"
        return headers

    async def _send_json(self, ex: _Exchange, status: int, body: JSON, extra: dict[str, str] | None = None) -> None:
        data = dumps(body).encode()
        await ex.send(self._json_head(ex.req, status, len(data), extra) + data)

    async def _send_sse(self, ex: _Exchange, events: list[bytes]) -> None:
        await ex.send(self._sse_head(ex.req) + _chunked(events) + b"0\r\n\r\n")


async def _serve_forever(port: int, reply: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with FakeLLM(port=port) as fake:
        fake.default = Turn(text=reply)
        print(f"READY {fake.url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.llm", description="Fake Anthropic + OpenAI API server")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = pick a free one)")
    parser.add_argument("--reply", default="ok", help="text of every answer")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(args.port, args.reply))


if __name__ == "__main__":
    main()
