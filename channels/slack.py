"""Slack as a channel: Socket Mode (no public URL needed) or the Events API over HTTP, via slack-bolt.

    adapter = SlackAdapter(config, ctx)
    await adapter.start()        # auth.test, then connect the socket or listen on host:port
    ts = await adapter.send(Outbound("slack", "D123", "**done**", thread_id="1700000000.000100"))
    await adapter.stop()

DMs are always for us; in channels we answer when mentioned (``app_mention``) and reply in the
thread, which is a session of its own. A channel message is both a ``message`` and an ``app_mention``
event, so plain channel messages are only read with ``group_policy: open``, and then only without
the mention. Bolt acks every event before our listener runs; Slack's redeliveries carry the same
``ts`` and are dropped by ``ctx.publish``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from agent.bus import Inbound, Outbound
from agent.config import SlackChannel
from agent.errors import ChannelError
from channels.access import Who
from channels.base import ChannelContext, ChannelState, DeliveryError, scope_key, split_text
from channels.slack_format import from_slack, inbox_path, to_mrkdwn

if TYPE_CHECKING:
    import aiohttp
    from aiohttp import web
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
    from slack_sdk.web.async_client import AsyncWebClient

logger = logging.getLogger(__name__)

DEFAULT_API = "https://slack.com/api/"
EVENTS_PATH = "/slack/events"
PART_LIMIT = 3500
SENT_KINDS = ("reply", "error", "notice")
RETRYABLE_ERRORS = {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
CONNECT_TIMEOUT = 30.0
MAX_FILE_BYTES = 25 * 1024 * 1024
MAX_FILES = 10
MAX_PROGRESS = 256
_FIX_TOKEN = "Set channels[N].bot_token or SLACK_BOT_TOKEN."


class SlackAdapter:
    rate_limit_retries = 3  # how often the SDK waits out a 429 itself before send() reports it

    def __init__(self, config: SlackChannel, ctx: ChannelContext) -> None:
        self.config, self.ctx = config, ctx
        self.name: str = config.label
        self.state: ChannelState = ctx.state
        self.http_port: int | None = None  # HTTP mode: the port actually bound (config.port may be 0)
        self.bot_user_id: str | None = None
        self._api_url = (config.base_url or DEFAULT_API).rstrip("/") + "/"  # the SDK urljoins methods onto it
        self._client: AsyncWebClient | None = None
        self._socket: AsyncSocketModeHandler | None = None
        self._runner: web.AppRunner | None = None
        self._progress: dict[tuple[str, ...], tuple[int, str | None]] = {}  # parts delivered, last ts
        self._inflight: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        try:
            from slack_bolt.async_app import AsyncApp
        except ImportError as exc:
            raise ChannelError(f"Channel {self.name!r} needs slack-bolt: pip install 'slack_bolt>=1.30,<2' "
                               "aiohttp.") from exc
        self._check_config()
        await self.stop()  # a retried start begins clean
        self._client = self._make_client()
        await self._auth_test(self._client)
        app = AsyncApp(client=self._client, signing_secret=self.config.signing_secret or "",
                       process_before_response=False, name=self.name, logger=logger)
        app.event("message")(self._on_message)
        app.event("app_mention")(self._on_mention)
        try:
            if self.config.mode == "http":
                await self._serve_http(app.web_app(path=EVENTS_PATH))
            else:
                await self._connect_socket(app)
        except BaseException:
            await self.stop()
            raise
        self.state.up()

    async def stop(self) -> None:
        socket, runner = self._socket, self._runner
        self._socket = self._runner = None
        if socket is not None:
            await socket.close_async()
            await asyncio.sleep(0)  # let the SDK's cancelled receive/monitor tasks finish
        if runner is not None:
            await runner.cleanup()
            self.http_port = None
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=5)
        self.state.connected = False

    def _check_config(self) -> None:
        if not self.config.bot_token.strip():
            raise ChannelError(f"Slack channel {self.name!r} has no bot token (xoxb-…). {_FIX_TOKEN}")
        if self.config.mode == "http" and not self.config.signing_secret:
            raise ChannelError("Slack HTTP mode needs the app's signing secret to verify requests. Set "
                               "channels[N].signing_secret or SLACK_SIGNING_SECRET (Basic Information → "
                               "Signing Secret), or use mode: socket.")
        if self.config.mode == "socket" and not self.config.app_token:
            raise ChannelError("Slack Socket Mode needs an app-level token (xapp-…, scope "
                               "connections:write). Set channels[N].app_token or SLACK_APP_TOKEN.")

    def _make_client(self) -> AsyncWebClient:
        from slack_sdk.http_retry.builtin_async_handlers import (
            AsyncConnectionErrorRetryHandler,
            AsyncRateLimitErrorRetryHandler,
        )
        from slack_sdk.web.async_client import AsyncWebClient

        handlers = [AsyncConnectionErrorRetryHandler(),
                    AsyncRateLimitErrorRetryHandler(max_retry_count=self.rate_limit_retries)]
        return AsyncWebClient(token=self.config.bot_token, base_url=self._api_url, retry_handlers=handlers)

    async def _auth_test(self, client: AsyncWebClient) -> None:
        from slack_sdk.errors import SlackApiError

        try:
            reply = await client.auth_test()
        except SlackApiError as exc:
            error = _error_code(exc)
            if error in ("invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"):
                raise ChannelError(f"Slack rejected the bot token ({error}). {_FIX_TOKEN}") from exc
            raise ChannelError(f"Slack auth.test failed ({error}); retrying later.") from exc
        except Exception as exc:
            if not _is_network_error(exc):
                raise
            raise ChannelError(f"Cannot reach Slack at {self._api_url} ({exc or type(exc).__name__}).") from exc
        self.bot_user_id = str(reply.get("user_id") or "") or None

    async def _connect_socket(self, app: Any) -> None:
        """Ask for the socket URL ourselves: the SDK's connect() retries a refused app token forever."""
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
        from slack_sdk.errors import SlackApiError

        app_token = self.config.app_token or ""
        try:
            opened = await app.client.apps_connections_open(app_token=app_token)
        except SlackApiError as exc:
            raise ChannelError(f"Slack refused the app-level token ({_error_code(exc)}). Set "
                               "channels[N].app_token or SLACK_APP_TOKEN (xapp-…, scope connections:write).") from exc
        except Exception as exc:
            if not _is_network_error(exc):
                raise
            raise ChannelError(f"Cannot reach Slack at {self._api_url} ({exc or type(exc).__name__}).") from exc
        self._socket = AsyncSocketModeHandler(app, app_token=app_token)
        self._socket.client.wss_uri = opened["url"]
        try:
            await asyncio.wait_for(self._socket.connect_async(), CONNECT_TIMEOUT)
        except TimeoutError as exc:
            raise ChannelError(f"Slack Socket Mode did not connect within {CONNECT_TIMEOUT:.0f} s.") from exc

    async def _serve_http(self, web_app: web.Application) -> None:
        from aiohttp import web

        self._runner = web.AppRunner(web_app, access_log=None)
        await self._runner.setup()
        host, port = self.config.host, self.config.port
        try:
            await web.TCPSite(self._runner, host, port).start()
        except OSError as exc:
            raise ChannelError(f"Slack HTTP mode cannot listen on {host}:{port} ({exc.strerror or exc}). "
                               "Set channels[N].port to a free port.") from exc
        self.http_port = int(self._runner.addresses[0][1])
        logger.info("slack %s: Events API on http://%s:%s%s", self.name, host, self.http_port, EVENTS_PATH)

    async def _on_message(self, event: dict[str, Any]) -> None:
        await self._guarded(self._handle(event, mention=False))

    async def _on_mention(self, event: dict[str, Any]) -> None:
        await self._guarded(self._handle(event, mention=True))

    async def _guarded(self, work: Coroutine[Any, Any, None]) -> None:
        """Listener boundary: an event must never take the connection down; the task is drained on stop."""
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            await work
        except Exception:
            logger.exception("slack %s: failed to handle an event", self.name)
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def _handle(self, event: dict[str, Any], *, mention: bool) -> None:
        if not self._wanted(event, mention=mention):
            return
        channel, user = str(event["channel"]), str(event["user"])
        is_dm = _is_dm(event)
        decision = self.ctx.access.check(Who(user, chat=channel, is_group=not is_dm, addressed=mention, name=user))
        if not decision.allowed:
            if decision.reply:
                await self._post_quietly(channel, decision.reply)
            return
        self.state.last_message = time.time()
        images: tuple[str, ...] = ()
        attachments: tuple[str, ...] = ()
        if event.get("files"):
            images, attachments = await self._fetch_files(event["files"], str(event["ts"]))
        thread = event.get("thread_ts") if is_dm else event.get("thread_ts") or event["ts"]
        await self.ctx.publish(Inbound(
            channel=self.ctx.label, chat_id=channel, sender_id=user,
            text=from_slack(str(event.get("text") or ""), self.bot_user_id),
            message_id=str(event["ts"]), thread_id=str(thread) if thread else None,
            attachments=attachments, images=images, is_owner=decision.owner,
            scope=scope_key(self.config.session_scope, self.ctx.label, user)))

    def _wanted(self, event: dict[str, Any], *, mention: bool) -> bool:
        """Only people's new messages, each once (see the module docstring)."""
        subtype = event.get("subtype")
        user = event.get("user")
        if event.get("hidden") or event.get("bot_id") or (subtype and subtype != "file_share"):
            return False
        if not user or user == self.bot_user_id or not event.get("channel") or not event.get("ts"):
            return False
        if _is_dm(event):
            return not mention  # DMs arrive as message.im; an app_mention there would be a duplicate
        if mention:
            return True
        mentioned = self.bot_user_id is not None and f"<@{self.bot_user_id}" in str(event.get("text") or "")
        return self.config.group_policy == "open" and not mentioned

    async def _post_quietly(self, channel: str, text: str) -> None:
        if self._client is None:
            return
        try:
            await self._client.chat_postMessage(channel=channel, text=text, unfurl_links=False)
        except Exception as exc:  # a pairing code that cannot be sent is logged, never raised into Bolt
            logger.warning("slack %s: could not answer %s (%s)", self.name, channel, exc)

    async def _fetch_files(self, files: list[dict[str, Any]], ts: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Download shared files into the inbox: images for the model to see, the rest as attachments."""
        import aiohttp

        images: list[str] = []
        others: list[str] = []
        headers = {"Authorization": f"Bearer {self.config.bot_token}"}
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
            for meta in files[:MAX_FILES]:
                path = await self._fetch_file(session, meta, ts)
                if path is not None:
                    mimetype = str(meta.get("mimetype") or "")
                    (images if mimetype.startswith("image/") else others).append(str(path))
        return tuple(images), tuple(others)

    async def _fetch_file(self, session: aiohttp.ClientSession, meta: dict[str, Any], ts: str) -> Path | None:
        import aiohttp

        url = str(meta.get("url_private_download") or meta.get("url_private") or "")
        name = str(meta.get("name") or meta.get("title") or "file")
        if not self._trusted_file_url(url):
            logger.warning("slack %s: not downloading %r from %r (not a Slack file URL)", self.name, name, url)
            return None
        if int(meta.get("size") or 0) > MAX_FILE_BYTES:
            logger.warning("slack %s: %r is larger than %d bytes; skipped", self.name, name, MAX_FILE_BYTES)
            return None
        try:
            async with session.get(url, allow_redirects=False) as resp:
                if resp.status != 200 or resp.content_type == "text/html":
                    logger.warning("slack %s: download of %r failed (HTTP %s); does the app have the "
                                   "files:read scope?", self.name, name, resp.status)
                    return None
                data = await _read_capped(resp)
        except (TimeoutError, aiohttp.ClientError) as exc:
            logger.warning("slack %s: download of %r failed (%s)", self.name, name, exc)
            return None
        if data is None:
            return None
        path = inbox_path(self.ctx.inbox, ts, str(meta.get("id") or ""), name)
        await asyncio.to_thread(_write_private, path, data)
        return path

    def _trusted_file_url(self, url: str) -> bool:
        """The bot token is only ever sent to Slack's file host or to the configured API host."""
        target, api = urlsplit(url), urlsplit(self._api_url)
        host = (target.hostname or "").lower()
        slack_host = target.scheme == "https" and (host == "slack.com" or host.endswith(".slack.com"))
        return slack_host or (bool(host) and (target.scheme, target.netloc) == (api.scheme, api.netloc))

    async def send(self, out: Outbound) -> str | None:
        """Post ``out`` in parts; the ts of the last part. A retry after a failure skips parts already sent."""
        if out.kind not in SENT_KINDS or not out.text.strip():
            return None
        if self._client is None:
            raise DeliveryError(f"Slack channel {self.name} is not connected yet.", retryable=True)
        parts = split_text(to_mrkdwn(out.text), PART_LIMIT)
        key = _progress_key(out)
        done, last_ts = self._progress.get(key, (0, None))
        for index in range(done, len(parts)):
            try:
                reply = await self._client.chat_postMessage(channel=out.chat_id, text=parts[index],
                                                            thread_ts=out.thread_id, unfurl_links=False)
            except Exception as exc:
                error = _delivery_error(exc, out.chat_id)
                if error is None:
                    raise
                self._remember(key, (index, last_ts))
                self.state.last_error = str(error)
                raise error from exc
            last_ts = str(reply.get("ts") or "") or last_ts
        self._progress.pop(key, None)
        return last_ts

    def _remember(self, key: tuple[str, ...], progress: tuple[int, str | None]) -> None:
        self._progress.pop(key, None)
        self._progress[key] = progress
        while len(self._progress) > MAX_PROGRESS:
            self._progress.pop(next(iter(self._progress)))


def _delivery_error(exc: Exception, chat: str) -> DeliveryError | None:
    """The SDK's failure as a DeliveryError; None for anything that is not a delivery failure (a bug)."""
    from slack_sdk.errors import SlackApiError

    if isinstance(exc, SlackApiError):
        error, status = _error_code(exc), exc.response.status_code
        if status == 429 or error in RETRYABLE_ERRORS or status >= 500:
            return DeliveryError(f"Slack did not take the message for {chat} ({error}, HTTP {status}); "
                                 "will retry.", retryable=True, retry_after=_retry_after(exc))
        hint = _HINTS.get(error, "")
        return DeliveryError(f"Slack refused the message for {chat} ({error}).{hint}", retryable=False)
    if _is_network_error(exc):
        return DeliveryError(f"Cannot reach Slack ({exc or type(exc).__name__}); will retry.", retryable=True)
    return None


_HINTS = {
    "channel_not_found": " Invite the bot to that channel, or check the channel id.",
    "not_in_channel": " Invite the bot to the channel (/invite @bot).",
    "is_archived": " The channel is archived.",
    **dict.fromkeys(("invalid_auth", "not_authed", "token_revoked"), f" {_FIX_TOKEN}"),
    "missing_scope": " Add the chat:write scope to the Slack app and reinstall it.",
}


def _is_network_error(exc: BaseException) -> bool:
    import aiohttp

    return isinstance(exc, OSError | TimeoutError | aiohttp.ClientError)


def _error_code(exc: Any) -> str:
    data = getattr(exc.response, "data", None)
    return str(data.get("error") or "unknown_error") if isinstance(data, dict) else "unknown_error"


def _retry_after(exc: Any) -> float | None:
    found: Any = {k.lower(): v for k, v in (exc.response.headers or {}).items()}.get("retry-after")
    raw = found[0] if isinstance(found, list) and found else found
    try:
        return float(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None


def _progress_key(out: Outbound) -> tuple[str, ...]:
    """One Outbound's identity across retries: its turn and chat, plus what it says (a turn may send several)."""
    digest = hashlib.sha256(f"{out.kind}\x1f{out.thread_id}\x1f{out.text}".encode()).hexdigest()[:16]
    return (out.turn_id or "", out.chat_id, digest)


def _is_dm(event: dict[str, Any]) -> bool:
    return event.get("channel_type") == "im" or str(event.get("channel", "")).startswith("D")


async def _read_capped(resp: aiohttp.ClientResponse) -> bytes | None:
    data = bytearray()
    async for chunk in resp.content.iter_chunked(64 * 1024):
        data += chunk
        if len(data) > MAX_FILE_BYTES:
            return None
    return bytes(data)


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
