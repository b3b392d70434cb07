"""A stand-in for Slack's Web API and Socket Mode, served on 127.0.0.1 (aiohttp).

Point the real SDKs at it::

    async with FakeSlack() as fake:
        client = AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)   # ".../api/" (trailing slash)
        # Socket Mode follows the ws:// URL that apps.connections.open returns.
        envelope = await fake.push_message("D1", "hello")      # an events_api envelope on the socket
        await fake.wait_for_ack(envelope)
        fake.calls_of("chat.postMessage")                      # what the Web API accepted

Web API: ``POST /api/<method>`` for auth.test, apps.connections.open, chat.postMessage and
users.info, answered ``{"ok": true, ...}``; the bearer token is checked (``bot_token`` for the bot,
``app_token`` for apps.connections.open). Faults: ``fail_next(method, error, status, retry_after)``;
``reject_token = True`` makes auth.test answer ``invalid_auth``. Files added with ``add_file`` are
served at their ``url_private`` to the bot token only. ``post_signed`` posts an Events API request
to an HTTP-mode app, signed like Slack does.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp import web
from slack_sdk.signature import SignatureVerifier

BOT_USER, BOT_ID, TEAM = "UBOT", "BBOT", "T1"


@dataclass
class Fault:
    error: str
    status: int
    retry_after: float | None


class FakeSlack:
    bot_token = "xoxb-test"
    app_token = "xapp-test"
    bot_user = BOT_USER

    def __init__(self) -> None:
        self.reject_token = False
        self.calls: list[tuple[str, dict[str, Any]]] = []  # accepted Web API calls, in order
        self.rejected: list[tuple[str, dict[str, Any]]] = []  # calls answered with an injected fault
        self.acks: list[dict[str, Any]] = []
        self.downloads: list[str] = []
        self.files: dict[str, tuple[bytes, str]] = {}
        self._faults: dict[str, deque[tuple[int, Fault]]] = defaultdict(deque)
        self._sockets: list[web.WebSocketResponse] = []
        self._changed = asyncio.Condition()
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def __aenter__(self) -> FakeSlack:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/socket", self._socket)
        app.router.add_get("/files/{file_id}", self._file)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    # --- what happened ---------------------------------------------------------------------------

    def calls_of(self, method: str) -> list[dict[str, Any]]:
        return [args for name, args in self.calls if name == method]

    async def wait_for_calls(self, method: str, count: int = 1, timeout: float = 3.0) -> list[dict[str, Any]]:
        await self._wait(lambda: len(self.calls_of(method)) >= count, timeout, f"{count} {method} call(s)")
        return self.calls_of(method)

    async def wait_for_ack(self, envelope_id: str, timeout: float = 3.0) -> None:
        await self._wait(lambda: any(a.get("envelope_id") == envelope_id for a in self.acks), timeout,
                         f"the ack of {envelope_id}")

    async def wait_connected(self, timeout: float = 3.0) -> None:
        await self._wait(lambda: any(not ws.closed for ws in self._sockets), timeout, "a socket connection")

    async def _wait(self, ready: Any, timeout: float, what: str) -> None:
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(ready), timeout)
            except TimeoutError:
                raise AssertionError(f"FakeSlack: timed out waiting for {what}") from None

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # --- scripting -------------------------------------------------------------------------------

    def fail_next(self, method: str, error: str = "ratelimited", status: int = 429,
                  retry_after: float | None = 0, *, after: int = 0, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` (after ``after`` more successful ones) with an error."""
        already = len(self.calls_of(method)) + after
        for _ in range(times):
            self._faults[method].append((already, Fault(error, status, retry_after)))

    def add_file(self, name: str, data: bytes, mimetype: str) -> dict[str, Any]:
        """A file object as it appears in a file_share message event."""
        file_id = f"F{next(self._ids)}"
        self.files[file_id] = (data, mimetype)
        url = f"{self.url}/files/{file_id}"  # the name stays out of the URL: it may be hostile
        return {"id": file_id, "name": name, "title": name, "mimetype": mimetype, "size": len(data),
                "url_private": url, "url_private_download": url}

    def new_ts(self) -> str:
        return f"{1_700_000_000 + next(self._ids)}.{next(self._ids):06d}"

    def event_payload(self, event: dict[str, Any]) -> dict[str, Any]:
        """An Events API ``event_callback`` around ``event`` (the body Slack posts / puts in the envelope)."""
        return {"token": "verification", "team_id": TEAM, "api_app_id": "A1", "event": event,
                "type": "event_callback", "event_id": f"Ev{next(self._ids)}", "event_time": int(time.time()),
                "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}]}

    def message_payload(self, channel: str, text: str, *, user: str | None = "U1", channel_type: str = "im",
                        ts: str | None = None, thread_ts: str | None = None, subtype: str | None = None,
                        bot_id: str | None = None, files: list[dict[str, Any]] | None = None,
                        ) -> dict[str, Any]:
        ts = ts or self.new_ts()
        event: dict[str, Any] = {"type": "message", "channel": channel, "user": user, "text": text, "ts": ts,
                                 "event_ts": ts, "channel_type": channel_type, "team": TEAM}
        extra = {"thread_ts": thread_ts, "subtype": subtype, "bot_id": bot_id, "files": files}
        event.update({k: v for k, v in extra.items() if v is not None})
        if user is None:
            del event["user"]
        return self.event_payload(event)

    def mention_payload(self, channel: str, text: str, *, user: str = "U1", ts: str | None = None,
                        thread_ts: str | None = None) -> dict[str, Any]:
        ts = ts or self.new_ts()
        event = {"type": "app_mention", "channel": channel, "user": user, "text": text, "ts": ts, "event_ts": ts,
                 "team": TEAM}
        if thread_ts:
            event["thread_ts"] = thread_ts
        return self.event_payload(event)

    async def push_message(self, channel: str, text: str, **fields: Any) -> str:
        """Push a ``message`` event (see ``message_payload`` for the fields); returns the envelope id."""
        return await self.push_envelope(self.message_payload(channel, text, **fields))

    async def push_mention(self, channel: str, text: str, **fields: Any) -> str:
        return await self.push_envelope(self.mention_payload(channel, text, **fields))

    async def push_envelope(self, payload: dict[str, Any], *, retry_attempt: int = 0,
                            retry_reason: str = "") -> str:
        """Send ``payload`` on the open socket as an events_api envelope; returns its envelope id."""
        await self.wait_connected()
        envelope_id = f"env-{next(self._ids)}"
        envelope = {"envelope_id": envelope_id, "type": "events_api", "payload": payload,
                    "accepts_response_payload": False, "retry_attempt": retry_attempt,
                    "retry_reason": retry_reason or ("timeout" if retry_attempt else "")}
        ws = next(ws for ws in reversed(self._sockets) if not ws.closed)
        await ws.send_str(json.dumps(envelope))
        return envelope_id

    # --- the server ------------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await _read_args(request)
        args["_token"] = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        fault = self._take_fault(method)
        if fault is not None:
            self.rejected.append((method, args))
            headers = {} if fault.retry_after is None else {"Retry-After": str(int(fault.retry_after))}
            return web.json_response({"ok": False, "error": fault.error}, status=fault.status, headers=headers)
        body = self._answer(method, args)
        if body.get("ok"):
            if "ts" in body:
                args["_ts"] = body["ts"]  # the ts the message got
            self.calls.append((method, args))
            await self._notify()
        return web.json_response(body)

    def _take_fault(self, method: str) -> Fault | None:
        queue = self._faults.get(method)
        if queue and len(self.calls_of(method)) >= queue[0][0]:
            return queue.popleft()[1]
        return None

    def _answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        token = args["_token"]
        if method == "apps.connections.open":
            if token != self.app_token:
                return {"ok": False, "error": "invalid_auth"}
            return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/socket"}
        if self.reject_token or token != self.bot_token:
            return {"ok": False, "error": "invalid_auth"}
        if method == "auth.test":
            return {"ok": True, "url": "https://fake.slack.com/", "team": "Fake", "user": "reverie",
                    "team_id": TEAM, "user_id": BOT_USER, "bot_id": BOT_ID, "is_enterprise_install": False}
        if method == "chat.postMessage":
            if not args.get("channel"):
                return {"ok": False, "error": "channel_not_found"}
            ts = self.new_ts()
            return {"ok": True, "channel": args["channel"], "ts": ts,
                    "message": {"type": "message", "text": args.get("text", ""), "user": BOT_USER, "ts": ts}}
        if method == "users.info":
            user = str(args.get("user", ""))
            return {"ok": True, "user": {"id": user, "name": user.lower(), "real_name": f"User {user}"}}
        return {"ok": False, "error": "unknown_method"}

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_str(json.dumps({"type": "hello", "num_connections": 1,
                                      "debug_info": {"host": "fake", "approximate_connection_time": 3600},
                                      "connection_info": {"app_id": "A1"}}))
        await self._notify()
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                data = json.loads(message.data)
                if "envelope_id" in data:
                    self.acks.append(data)
                    await self._notify()
        return ws

    async def _file(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        if request.headers.get("Authorization") != f"Bearer {self.bot_token}" or file_id not in self.files:
            return web.Response(status=404, text="<html>login</html>", content_type="text/html")
        self.downloads.append(file_id)
        data, mimetype = self.files[file_id]
        return web.Response(body=data, content_type=mimetype)


async def _read_args(request: web.Request) -> dict[str, Any]:
    """The SDK sends JSON for chat.postMessage and a form (or nothing) for the rest."""
    args: dict[str, Any] = dict(request.query)
    if request.content_type == "application/json":
        args.update(await request.json())
    elif request.can_read_body:
        args.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
    return args


async def post_signed(url: str, body: dict[str, Any] | str, secret: str, *, timestamp: int | None = None,
                      signature: str | None = None) -> tuple[int, str]:
    """POST an Events API request as Slack does (X-Slack-Signature over ``v0:<timestamp>:<body>``)."""
    raw = body if isinstance(body, str) else json.dumps(body)
    stamp = str(timestamp if timestamp is not None else int(time.time()))
    headers = {"Content-Type": "application/json", "X-Slack-Request-Timestamp": stamp,
               "X-Slack-Signature": signature or SignatureVerifier(secret).generate_signature(timestamp=stamp,
                                                                                               body=raw)}
    async with aiohttp.ClientSession() as session, session.post(url, data=raw, headers=headers) as resp:
        return resp.status, await resp.text()
