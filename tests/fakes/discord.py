"""A stand-in for Discord's REST API and gateway, served by aiohttp on 127.0.0.1.

Point the real discord.py client at it (the one library we redirect through class-level globals,
see LIBRARIES.md section 2)::

    async with FakeDiscord() as fake:
        fake.redirect(monkeypatch)                  # Route.BASE and DEFAULT_GATEWAY
        client = discord.Client(intents=..., guild_ready_timeout=0.05)
        task = asyncio.create_task(client.start(fake.token))
        await fake.push_message(42, "hi", author_id=7)               # a DM
        await fake.push_message(50, "<@999> hi", guild_id=5)         # a server channel (GUILD_CREATE first)
        fake.fail_next("/channels/42/messages", status=429)          # the next matching call fails once
        fake.calls_of("POST", "/channels/42/messages")               # recorded REST calls

REST lives under ``/api/v10``; recorded paths drop that prefix. Attachments are served by the fake
itself under ``/attachments/...``. The gateway at ``/gateway`` speaks plain JSON text frames:
HELLO, then READY for IDENTIFY, RESUMED for RESUME, HEARTBEAT_ACK for each heartbeat.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any
from urllib.parse import quote

import pytest
import yarl
from aiohttp import WSMsgType, web

BOT_ID = 999
BOT_NAME = "reverie-test"
TOKEN = "FAKE.TOKEN"
JSON_TYPE = "application/json"  # exactly: discord.http.json_or_text ignores "application/json; charset=utf-8"

JSONDict = dict[str, Any]


@dataclass
class _Fault:
    prefix: str
    status: int
    retry_after: float
    method: str | None
    skip: int  # matching requests to let through first


def user(user_id: int, name: str | None = None, *, bot: bool = False) -> JSONDict:
    return {"id": str(user_id), "username": name or f"user{user_id}", "discriminator": "0",
            "global_name": None, "avatar": None, "bot": bot}


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _message(message_id: int, channel_id: int, author: JSONDict, content: str) -> JSONDict:
    return {"id": str(message_id), "channel_id": str(channel_id), "author": author, "content": content,
            "timestamp": _now(), "edited_timestamp": None, "tts": False, "mention_everyone": False,
            "mentions": [], "mention_roles": [], "attachments": [], "embeds": [], "pinned": False,
            "type": 0, "flags": 0}


def _text_channel(channel_id: int, guild_id: int) -> JSONDict:
    return {"id": str(channel_id), "type": 0, "guild_id": str(guild_id), "name": f"chan-{channel_id}",
            "position": 0, "permission_overwrites": [], "nsfw": False, "parent_id": None}


def _thread(thread_id: int, parent_id: int, guild_id: int) -> JSONDict:
    return {"id": str(thread_id), "type": 11, "guild_id": str(guild_id), "parent_id": str(parent_id),
            "owner_id": "1", "name": f"thread-{thread_id}", "message_count": 0, "member_count": 1,
            "thread_metadata": {"archived": False, "auto_archive_duration": 1440,
                                "archive_timestamp": _now(), "locked": False}}


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=json.dumps(body).encode(),
                        headers={"Content-Type": JSON_TYPE, **(headers or {})})


class FakeDiscord:
    """Discord REST + gateway on loopback. See the module docstring."""

    def __init__(self, *, reject_token: bool = False, heartbeat_interval_ms: int = 500) -> None:
        self.token = TOKEN
        self.reject_token = reject_token  # every authenticated call (first: GET /users/@me) → 401
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.url = ""
        self.calls: list[JSONDict] = []  # {"method", "path", "json", "headers", "status"}
        self.gateway_frames: list[JSONDict] = []  # what the client sent on the gateway
        self.connections = 0  # websocket connections accepted
        self.messages: dict[int, JSONDict] = {}  # messages the bot posted, by id
        self._nonces: dict[str, int] = {}  # enforce_nonce: a repeated nonce returns the first message
        self._files: dict[str, tuple[bytes, str]] = {}  # attachment id → (bytes, content type)
        self._faults: list[_Fault] = []
        self._guilds: dict[int, dict[int, JSONDict]] = {}  # guild id → channel id → channel payload
        self._ids = itertools.count(100_000)
        self._seq = 0
        self._ws: web.WebSocketResponse | None = None
        self._live = asyncio.Event()  # a gateway session is identified or resumed
        self._send_lock = asyncio.Lock()
        self._runner: web.AppRunner | None = None

    # lifecycle

    async def start(self) -> FakeDiscord:
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", "/{tail:.*}", self._http)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"{self.url.replace('http://', 'ws://')}/gateway"

    def redirect(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Point discord.py's REST base and gateway URL at this fake for the current test."""
        import discord.gateway
        import discord.http

        monkeypatch.setattr(discord.http.Route, "BASE", self.api_url)
        monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(self.gateway_url))

    # what tests look at

    def calls_of(self, method: str, path_prefix: str) -> list[JSONDict]:
        return [c for c in self.calls if c["method"] == method and c["path"].startswith(path_prefix)]

    def ops(self, op: int) -> list[JSONDict]:
        return [f for f in self.gateway_frames if f.get("op") == op]

    # fault injection

    def fail_next(self, path_prefix: str, status: int = 429, retry_after: float = 0.05,
                  method: str | None = None, after: int = 0) -> None:
        """The next request whose path starts with ``path_prefix`` (after letting ``after`` of them
        through) gets ``status``; a 429 carries ``retry_after`` seconds."""
        self._faults.append(_Fault(path_prefix, status, retry_after, method, after))

    async def drop_gateway(self, code: int = 4000) -> None:
        """Close the websocket as Discord does on a hiccup; discord.py reconnects and resumes."""
        ws, self._ws = self._ws, None
        self._live.clear()
        if ws is not None:
            await ws.close(code=code)

    # gateway events

    async def push_raw(self, payload: JSONDict) -> None:
        """Send one frame (``op``/``t``/``d``; ``s`` is filled in for dispatches) once a session is live."""
        await asyncio.wait_for(self._live.wait(), timeout=5)
        frame = dict(payload)
        if frame.get("op", 0) == 0 and "s" not in frame:
            self._seq += 1
            frame["s"] = self._seq
        assert self._ws is not None
        async with self._send_lock:
            await self._ws.send_str(json.dumps(frame))

    async def dispatch(self, event: str, data: JSONDict) -> None:
        await self.push_raw({"op": 0, "t": event, "d": data})

    async def push_message(self, channel_id: int, content: str, *, author_id: int = 1001,
                           author_name: str | None = None, author_bot: bool = False, guild_id: int | None = None,
                           thread_parent_id: int | None = None, mentions_bot: bool = False,
                           reply_to_bot: bool = False, attachments: list[tuple[str, str, bytes]] | None = None,
                           message_id: int | None = None) -> JSONDict:
        """MESSAGE_CREATE from a person. No ``guild_id``: a DM. With ``guild_id`` the channel (or thread
        under ``thread_parent_id``) is announced by GUILD_CREATE first so discord.py has it cached.
        ``attachments``: (filename, content type, bytes), served by the fake. Returns the payload."""
        if guild_id is not None:
            await self._ensure_channel(guild_id, channel_id, thread_parent_id)
        if mentions_bot and f"<@{BOT_ID}>" not in content:
            content = f"<@{BOT_ID}> {content}"
        mid = message_id if message_id is not None else next(self._ids)
        data = _message(mid, channel_id, user(author_id, author_name, bot=author_bot), content)
        if mentions_bot:
            data["mentions"] = [user(BOT_ID, BOT_NAME, bot=True)]
        if guild_id is not None:
            data["guild_id"] = str(guild_id)
        if reply_to_bot:
            self._add_reply(data, channel_id, guild_id)
        data["attachments"] = [self._attachment(mid, *a) for a in attachments or []]
        await self.dispatch("MESSAGE_CREATE", data)
        return data

    def _add_reply(self, data: JSONDict, channel_id: int, guild_id: int | None) -> None:
        earlier = _message(next(self._ids), channel_id, user(BOT_ID, BOT_NAME, bot=True), "an earlier answer")
        data["type"] = 19
        data["message_reference"] = {"message_id": earlier["id"], "channel_id": str(channel_id),
                                     **({"guild_id": str(guild_id)} if guild_id else {})}
        data["referenced_message"] = earlier

    def _attachment(self, message_id: int, filename: str, content_type: str, blob: bytes) -> JSONDict:
        aid = next(self._ids)
        self._files[str(aid)] = (blob, content_type)
        url = f"{self.url}/attachments/{message_id}/{aid}/{quote(filename, safe='')}"
        return {"id": str(aid), "filename": filename, "size": len(blob), "url": url, "proxy_url": url,
                "content_type": content_type}

    async def _ensure_channel(self, guild_id: int, channel_id: int, parent_id: int | None) -> None:
        channels = self._guilds.setdefault(guild_id, {})
        if channel_id in channels:
            return
        if parent_id is not None:
            channels.setdefault(parent_id, _text_channel(parent_id, guild_id))
            channels[channel_id] = _thread(channel_id, parent_id, guild_id)
        else:
            channels[channel_id] = _text_channel(channel_id, guild_id)
        await self.dispatch("GUILD_CREATE", self._guild(guild_id))

    def _guild(self, guild_id: int) -> JSONDict:
        channels = self._guilds[guild_id].values()
        return {"id": str(guild_id), "name": f"guild-{guild_id}", "icon": None, "owner_id": "1",
                "roles": [], "emojis": [], "features": [], "member_count": 2, "unavailable": False,
                "channels": [c for c in channels if c["type"] != 11],
                "threads": [c for c in channels if c["type"] == 11], "members": [], "voice_states": []}

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connections += 1
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}}))
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            self.gateway_frames.append(frame)
            await self._on_frame(ws, frame)
        return ws

    async def _on_frame(self, ws: web.WebSocketResponse, frame: JSONDict) -> None:
        op = frame.get("op")
        if op == 1:
            await ws.send_str(json.dumps({"op": 11}))
        elif op == 2:
            if frame["d"].get("token") != self.token or self.reject_token:
                await ws.close(code=4004)  # Authentication failed
                return
            self._ws = ws
            self._live.set()
            await self.dispatch("READY", self._ready())
        elif op == 6:
            self._ws = ws
            self._live.set()
            await self.dispatch("RESUMED", {})

    def _ready(self) -> JSONDict:
        return {"v": 10, "user": user(BOT_ID, BOT_NAME, bot=True), "guilds": [], "session_id": "fake-session",
                "resume_gateway_url": self.gateway_url, "private_channels": [],
                "application": {"id": str(BOT_ID), "flags": 0}}

    # REST

    async def _http(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        api = path.startswith("/api/v10/")
        rel = path.removeprefix("/api/v10") if api else path
        call = {"method": request.method, "path": rel, "json": await _body(request),
                "headers": dict(request.headers), "status": 0}
        self.calls.append(call)
        response = self._fault(request.method, rel) or self._answer(request, rel, call["json"], api)
        call["status"] = response.status
        return response

    def _fault(self, method: str, path: str) -> web.Response | None:
        for fault in self._faults:
            if path.startswith(fault.prefix) and fault.method in (None, method):
                if fault.skip > 0:
                    fault.skip -= 1
                    return None
                self._faults.remove(fault)
                if fault.status == 429:  # discord.py treats a 429 without Via as a Cloudflare ban
                    return _json(429, {"message": "You are being rate limited.", "retry_after": fault.retry_after,
                                       "global": False}, {"Via": "1.1 google", "Retry-After": "1"})
                return _json(fault.status, {"message": f"{fault.status}: injected failure", "code": 0})
        return None

    def _answer(self, request: web.Request, path: str, body: Any, api: bool) -> web.Response:
        if not api:
            match = re.match(r"/attachments/\d+/(\d+)/", path)
            found = self._files.get(match.group(1)) if match else None
            if found is None:
                return _json(404, {"message": "404: Not Found", "code": 0})
            return web.Response(body=found[0], headers={"Content-Type": found[1]})
        if self.reject_token or request.headers.get("Authorization") != f"Bot {self.token}":
            return _json(401, {"message": "401: Unauthorized", "code": 0})
        return self._route(request.method, path, body)

    def _route(self, method: str, path: str, body: Any) -> web.Response:
        if method == "GET" and path == "/users/@me":
            return _json(200, user(BOT_ID, BOT_NAME, bot=True))
        if method == "GET" and path == "/oauth2/applications/@me":
            return _json(200, {"id": str(BOT_ID), "name": BOT_NAME, "description": "", "icon": None,
                               "bot_public": False, "bot_require_code_grant": False, "owner": user(1, "owner"),
                               "verify_key": "0" * 64, "flags": 0})
        if re.fullmatch(r"/channels/\d+/typing", path):
            return web.Response(status=204)
        if match := re.fullmatch(r"/channels/(\d+)/messages", path):
            if method == "POST":
                return _json(200, self._post(int(match.group(1)), body))
        if match := re.fullmatch(r"/channels/(\d+)/messages/(\d+)", path):
            found = self.messages.get(int(match.group(2)))
            if method == "PATCH" and found is not None:
                found.update(content=body.get("content", found["content"]), edited_timestamp=_now())
                return _json(200, found)
        return _json(404, {"message": "404: Unknown route", "code": 0})

    def _post(self, channel_id: int, body: Any) -> JSONDict:
        nonce = str(body.get("nonce")) if body.get("enforce_nonce") else None
        if nonce is not None and nonce in self._nonces:
            return self.messages[self._nonces[nonce]]
        mid = next(self._ids)
        if nonce is not None:
            self._nonces[nonce] = mid
        data = _message(mid, channel_id, user(BOT_ID, BOT_NAME, bot=True), body.get("content") or "")
        if body.get("message_reference"):
            data["type"] = 19
            data["message_reference"] = body["message_reference"]
        self.messages[mid] = data
        return data


async def _body(request: web.Request) -> Any:
    if request.content_type == "application/json":
        raw = await request.text()
        return json.loads(raw) if raw else None
    if request.content_type.startswith("multipart/"):
        form = await request.post()
        payload = form.get("payload_json")
        return json.loads(payload) if isinstance(payload, str) else {}
    return None


