"""A stand-in for the Telegram Bot API on 127.0.0.1, for python-telegram-bot's ``base_url`` knob.

    async with FakeTelegram() as fake:
        Application.builder().token(fake.token).base_url(fake.base_url).base_file_url(fake.file_url)
        fake.push_text(42, "hello")                  # the next getUpdates returns it
        fake.fail_next("sendMessage", 429, retry_after=0.05)
        sent = await fake.wait_for("sendMessage")    # recorded calls, parameters decoded

Methods: getMe, deleteWebhook, getUpdates (long poll on ``offset``/``timeout``), sendMessage,
sendChatAction, editMessageText, getFile, and file downloads under ``/file/bot<token>/<path>``.
PTB posts form fields and JSON-encodes every non-string value, so each field is ``json.loads``-ed
except the ones that are always text. The bot is id 999, ``@reverie_test_bot``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

BOT = {"id": 999, "is_bot": True, "first_name": "Reverie Test", "username": "reverie_test_bot",
       "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False}
TEXT_FIELDS = frozenset({"text", "caption", "parse_mode", "action", "file_id", "url"})
JSON = dict[str, Any]


def _ok(result: Any) -> web.Response:
    return web.json_response({"ok": True, "result": result})


def _error(status: int, description: str, retry_after: float | None = None) -> web.Response:
    body: JSON = {"ok": False, "error_code": status, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return web.json_response(body, status=status)


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def auto_entities(text: str) -> list[JSON]:
    """What Telegram adds by itself: a bot_command at the start, a mention for each @name."""
    entities: list[JSON] = []
    for match in re.finditer(r"(?<!\w)(/\w+(?:@\w+)?|@\w{3,})", text):
        if match.group().startswith("/") and match.start() != 0:
            continue
        kind = "bot_command" if match.group().startswith("/") else "mention"
        entities.append({"type": kind, "offset": _utf16(text[:match.start()]), "length": _utf16(match.group())})
    return entities


class FakeTelegram:
    def __init__(self, token: str = "123456:TEST-fake-token") -> None:
        self.token = token
        self.reject_token = False  # getMe (and everything else) answers 401
        self.reject_html = False  # sendMessage/editMessageText with parse_mode=HTML → "can't parse entities"
        self.calls: list[tuple[str, JSON]] = []
        self.call_times: list[float] = []
        self.sent: list[JSON] = []  # messages the bot sent, as returned to it
        self.files: dict[str, tuple[str, bytes]] = {}  # file_id → (file_path, content)
        self._updates: list[JSON] = []
        self._faults: dict[str, deque[tuple[int, str, float | None] | None]] = {}
        self._ids = itertools.count(1)
        self._message_ids = itertools.count(100)
        self._wake: asyncio.Future[None] | None = None
        self._stopped = False
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> FakeTelegram:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        # handler_cancellation: a long poll whose client went away (PTB stopping) ends at once,
        # instead of answering a closed connection later
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.stop()
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self) -> None:
        """Release every waiting long poll (else shutdown waits out their timeouts)."""
        self._stopped = True
        self._notify()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    # -- what tests look at ---------------------------------------------------------------------

    def calls_of(self, method: str) -> list[JSON]:
        return [params for name, params in self.calls if name.lower() == method.lower()]

    async def wait_for(self, method: str, count: int = 1, timeout: float = 3.0) -> list[JSON]:
        """The calls of ``method`` once there are at least ``count`` of them."""
        deadline = time.monotonic() + timeout
        while len(self.calls_of(method)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{method} called {len(self.calls_of(method))} times, expected {count}")
            await asyncio.sleep(0.01)
        return self.calls_of(method)

    def fail_next(self, method: str, status: int = 429, *, retry_after: float | None = 0.05,
                  description: str | None = None, times: int = 1, after: int = 0) -> None:
        """``times`` calls of ``method`` fail with ``status`` (429 carries ``retry_after``), once ``after``
        more have gone through."""
        if status == 429:
            fault = (429, description or f"Too Many Requests: retry after {retry_after}", retry_after)
        else:
            fault = (status, description or f"Error {status}", None)
        self._faults.setdefault(method.lower(), deque()).extend([None] * after + [fault] * times)

    # -- updates --------------------------------------------------------------------------------

    def push_raw(self, update: JSON) -> int:
        """Queue an update as given (an ``update_id`` is added if missing); duplicates are kept."""
        update.setdefault("update_id", next(self._ids))
        self._updates.append(update)
        self._notify()
        return int(update["update_id"])

    def push_text(self, chat_id: int, text: str, *, entities: list[JSON] | None = None, **who: Any) -> int:
        message = self.message(chat_id, **who)
        message["text"] = text
        message["entities"] = auto_entities(text) if entities is None else entities
        return self._push(message, who.get("edited", False))

    def push_photo(self, chat_id: int, data: bytes = b"\xff\xd8fake-jpeg", *, caption: str | None = None,
                   **who: Any) -> int:
        message = self.message(chat_id, **who)
        small = self.add_file(b"small", "photos", ".jpg")
        large = self.add_file(data, "photos", ".jpg")
        message["photo"] = [{"file_id": small, "file_unique_id": f"u{small}", "width": 90, "height": 60},
                            {"file_id": large, "file_unique_id": f"u{large}", "width": 1280, "height": 960}]
        self._caption(message, caption)
        return self._push(message, who.get("edited", False))

    def push_document(self, chat_id: int, data: bytes = b"hello", *, file_name: str | None = "notes.txt",
                      caption: str | None = None, mime_type: str = "text/plain", **who: Any) -> int:
        message = self.message(chat_id, **who)
        file_id = self.add_file(data, "documents", Path(file_name or "").suffix[:8])
        message["document"] = {"file_id": file_id, "file_unique_id": f"u{file_id}", "mime_type": mime_type,
                               "file_size": len(data), **({"file_name": file_name} if file_name else {})}
        self._caption(message, caption)
        return self._push(message, who.get("edited", False))

    def add_file(self, data: bytes, folder: str, suffix: str = "") -> str:
        """Register a downloadable file; its path is Telegram-like (``documents/file_3.txt``)."""
        number = len(self.files) + 1
        self.files[f"file-{number}"] = (f"{folder}/file_{number}{suffix}", data)
        return f"file-{number}"

    def message(self, chat_id: int, *, user_id: int | None = None, chat_type: str = "private", username: str = "alice",
                first_name: str = "Alice", reply_to_bot: bool = False, thread_id: int | None = None,
                edited: bool = False, is_bot: bool = False) -> JSON:
        """A message from a person (the fields Telegram always sends, plus what is asked for). The sender
        is ``user_id``, else the chat itself in a private chat (as in Telegram), else user 42."""
        if user_id is None:
            user_id = chat_id if chat_type == "private" else 42
        chat: JSON = {"id": chat_id, "type": chat_type}
        chat.update({"title": "Test group"} if chat_type in ("group", "supergroup") else {"first_name": first_name})
        message: JSON = {"message_id": next(self._message_ids), "date": int(time.time()), "chat": chat,
                         "from": {"id": user_id, "is_bot": is_bot, "first_name": first_name, "username": username}}
        if reply_to_bot:
            message["reply_to_message"] = {"message_id": next(self._message_ids), "date": int(time.time()),
                                           "chat": chat, "from": BOT, "text": "an earlier answer"}
        if thread_id is not None:
            chat["is_forum"] = True
            message.update(message_thread_id=thread_id, is_topic_message=True)
        if edited:
            message["edit_date"] = int(time.time())
        return message

    def _caption(self, message: JSON, caption: str | None) -> None:
        if caption is not None:
            message["caption"] = caption
            message["caption_entities"] = auto_entities(caption)

    def _push(self, message: JSON, edited: bool) -> int:
        return self.push_raw({"edited_message" if edited else "message": message})

    def _notify(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
        self._wake = None

    # -- the HTTP side --------------------------------------------------------------------------

    async def _params(self, request: web.Request) -> JSON:
        if request.content_type == "application/json":
            body = await request.json()
            return dict(body) if isinstance(body, dict) else {}
        form = await request.post()
        params: JSON = {}
        for key, value in form.items():
            if not isinstance(value, str):
                params[key] = value.file.read()  # an uploaded file
            elif key in TEXT_FIELDS:
                params[key] = value
            else:
                try:
                    params[key] = json.loads(value)
                except ValueError:
                    params[key] = value
        return params

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await self._params(request)
        self.calls.append((method, params))
        self.call_times.append(time.monotonic())  # for benchmarks: when each call arrived
        if self.reject_token or request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        faults = self._faults.get(method.lower())
        fault = faults.popleft() if faults else None
        if fault is not None:
            return _error(*fault)
        handler = self._handlers().get(method.lower())
        if handler is None:
            return _error(404, "Not Found: method not found")
        return await handler(params)

    def _handlers(self) -> dict[str, Callable[[JSON], Awaitable[web.Response]]]:
        return {"getme": self._get_me, "deletewebhook": self._true, "getupdates": self._get_updates,
                "sendmessage": self._send_message, "sendchataction": self._true,
                "editmessagetext": self._edit_message_text, "getfile": self._get_file}

    async def _get_me(self, params: JSON) -> web.Response:
        return _ok(BOT)

    async def _true(self, params: JSON) -> web.Response:
        return _ok(True)

    async def _get_updates(self, params: JSON) -> web.Response:
        offset = int(params.get("offset") or 0)
        if offset:  # confirms everything before it, as Telegram does
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        deadline = time.monotonic() + float(params.get("timeout") or 0)
        while not self._updates and not self._stopped and time.monotonic() < deadline:
            self._wake = self._wake or asyncio.get_running_loop().create_future()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._wake), deadline - time.monotonic())
        return _ok(self._updates[: int(params.get("limit") or 100)])

    async def _send_message(self, params: JSON) -> web.Response:
        if self.reject_html and params.get("parse_mode") == "HTML":
            return _error(400, "Bad Request: can't parse entities: Unsupported start tag \"x\" at byte offset 0")
        if not str(params.get("text", "")).strip():
            return _error(400, "Bad Request: message text is empty")
        message: JSON = {"message_id": next(self._message_ids), "date": int(time.time()), "from": BOT,
                         "chat": {"id": params["chat_id"], "type": "private", "first_name": "Alice"},
                         "text": params["text"]}
        if "message_thread_id" in params:
            message["message_thread_id"] = params["message_thread_id"]
        self.sent.append(message)
        return _ok(message)

    async def _edit_message_text(self, params: JSON) -> web.Response:
        if self.reject_html and params.get("parse_mode") == "HTML":
            return _error(400, "Bad Request: can't parse entities: Unsupported start tag \"x\" at byte offset 0")
        for message in self.sent:
            if message["message_id"] == params.get("message_id") and message["chat"]["id"] == params.get("chat_id"):
                if message["text"] == params.get("text"):
                    return _error(400, "Bad Request: message is not modified")
                message["text"] = params.get("text")
                return _ok(message)
        return _error(400, "Bad Request: message to edit not found")

    async def _get_file(self, params: JSON) -> web.Response:
        file_id = str(params.get("file_id"))
        if file_id not in self.files:
            return _error(400, "Bad Request: invalid file_id")
        path, data = self.files[file_id]
        return _ok({"file_id": file_id, "file_unique_id": f"u{file_id}", "file_size": len(data), "file_path": path})

    async def _download(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        for path, data in self.files.values():
            if path == request.match_info["path"]:
                self.calls.append(("download", {"path": path}))
                return web.Response(body=data)
        return web.Response(status=404)
