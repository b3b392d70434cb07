"""Discord as a channel: discord.py's gateway client in, REST messages out.

    channel = DiscordAdapter(config, ctx)
    await channel.start()   # log in, wait for READY; ChannelError for a bad token or no gateway
    await channel.send(Outbound("discord", "123", "hello", reply_to="456"))   # → id of the last part
    await channel.stop()

A thread is a channel of its own in Discord, so each thread is a session; in a server a thread is
allowed when it or its parent channel is in ``allow_chats``. Servers need a mention or a reply to
the bot (``group_policy``). Replies never ping anyone (no @everyone from the model), are split at
2,000 characters, and a part that was delivered is never sent again when a later part fails.
discord.py reconnects and resumes by itself; ``state`` follows it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.bus import Inbound, Outbound
from agent.config import DiscordChannel
from agent.errors import ChannelError
from channels.access import Who
from channels.base import ChannelContext, ChannelState, DeliveryError, scope_key, split_text

if TYPE_CHECKING:
    import discord

logger = logging.getLogger(__name__)

MESSAGE_LIMIT = 2000  # Discord's hard limit per message
SENT_KINDS = ("reply", "error", "notice")  # deltas and tool progress are not shown on Discord
TYPING_EVERY = 8.0  # the indicator lasts about 10 s
TYPING_FOR = 600.0
MAX_DOWNLOAD = 25 * 1024 * 1024
MAX_PROGRESS = 256  # partly delivered Outbounds remembered
TOKEN_REJECTED = "Discord rejected the token (401). Set channels[N].token or DISCORD_BOT_TOKEN."
INTENT_REFUSED = ("Discord refused the Message Content intent. Enable it for the bot in the Developer Portal "
                  "(Bot → Privileged Gateway Intents → Message Content Intent).")


class DiscordAdapter:
    ready_timeout = 30.0  # seconds start() waits for READY
    guild_ready_timeout = 0.1  # discord.py waits this long for each server's GUILD_CREATE before READY

    def __init__(self, config: DiscordChannel, ctx: ChannelContext) -> None:
        self.config, self.ctx = config, ctx
        self.name: str = config.label
        self.state: ChannelState = ctx.state
        self._client: discord.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._failure: BaseException | None = None
        self._stopping = False
        self._typing: dict[str, asyncio.Task[None]] = {}
        self._progress: dict[Outbound, tuple[int, str | None]] = {}  # parts delivered, last message id

    # lifecycle

    async def start(self) -> None:
        if self._task is not None and not self._task.done():
            return
        await self.stop()  # after a connection that ended for good: start afresh
        self._client, self._stopping, self._failure = self._make_client(), False, None
        self._ready.clear()
        self._task = asyncio.create_task(self._run(self._client), name=f"discord {self.name}")
        waiter = asyncio.create_task(self._ready.wait())
        try:
            await asyncio.wait({self._task, waiter}, timeout=self.ready_timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            await self.stop()
            raise
        finally:
            waiter.cancel()
        if self._ready.is_set():
            return
        failure = self._failure
        await self.stop()
        error = _start_error(failure, self.ready_timeout)
        self.state.down(str(error))
        raise error from failure

    async def stop(self) -> None:
        self._stopping = True
        for typing in self._typing.values():
            typing.cancel()
        self._typing.clear()
        client, runner = self._client, self._task
        self._client, self._task = None, None
        if client is not None:
            await client.close()
        if runner is not None:
            # close() ends client.start() at once unless it sleeps between reconnect attempts
            _done, pending = await asyncio.wait({runner}, timeout=1.0)
            if pending:
                runner.cancel()
                await asyncio.wait(pending)
        self.state.connected = False

    def _make_client(self) -> discord.Client:
        import discord
        import yarl

        if self.config.api_url:  # discord.py keeps its endpoints as class attributes
            discord.http.Route.BASE = self.config.api_url.rstrip("/")
        if self.config.gateway_url:
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.config.gateway_url)
        intents = discord.Intents.none()
        intents.guilds = intents.messages = intents.dm_messages = intents.message_content = True
        client = discord.Client(intents=intents, guild_ready_timeout=self.guild_ready_timeout,
                                max_ratelimit_timeout=60.0, chunk_guilds_at_startup=False)
        adapter = self

        async def on_ready() -> None:
            adapter._on_up(client)

        async def on_resumed() -> None:
            adapter._on_up(client)

        async def on_disconnect() -> None:
            if not adapter._stopping:
                adapter.state.down("Discord gateway disconnected; discord.py is reconnecting.")

        async def on_message(message: discord.Message) -> None:
            await adapter._on_message(message)

        for handler in (on_ready, on_resumed, on_disconnect, on_message):
            client.event(handler)
        return client

    async def _run(self, client: discord.Client) -> None:
        """client.start() for the adapter's lifetime: the owner of the connection task."""
        try:
            await client.start(self.config.token)
        except Exception as exc:
            self._failure = exc
            if not self._stopping and self._ready.is_set():
                logger.exception("Discord %s: the connection ended and will not come back", self.name)
                self.state.down(f"Discord connection ended: {exc}")

    def _on_up(self, client: discord.Client) -> None:
        if not self._ready.is_set():
            logger.info("Discord %s: connected as %s", self.name, client.user)
        self.state.up()
        self._ready.set()

    # inbound

    async def _on_message(self, message: discord.Message) -> None:
        try:
            await self._receive(message)
        except Exception:
            logger.exception("Discord %s: could not handle message %s", self.name, message.id)

    async def _receive(self, message: discord.Message) -> None:
        client = self._client
        me = client.user if client is not None else None
        if me is None or message.author.id == me.id or message.author.bot:
            return
        self.state.last_message = time.time()
        decision = self.ctx.access.check(self._who(message, me.id))
        if not decision.allowed:
            if decision.reply:
                await message.channel.send(decision.reply, allowed_mentions=_no_mentions())
            return
        inbound = await self._inbound(message, me.id, decision.owner)
        if await self.ctx.publish(inbound):
            self._start_typing(message.channel, str(message.channel.id))

    def _who(self, message: discord.Message, bot_id: int) -> Who:
        import discord

        channel = message.channel
        chat = str(channel.id)
        parent = channel.parent_id if isinstance(channel, discord.Thread) else None
        if parent is not None and chat not in self.config.allow_chats and str(parent) in self.config.allow_chats:
            chat = str(parent)  # a thread inherits its channel's permission
        # a server channel whose server is not cached yet still arrives as a non-DM: never treat it as private
        is_group = message.guild is not None or not isinstance(channel, discord.DMChannel)
        return Who(sender=str(message.author.id), chat=chat, is_group=is_group,
                   addressed=_addressed(message, bot_id), name=message.author.name)

    async def _inbound(self, message: discord.Message, bot_id: int, owner: bool) -> Inbound:
        sender = str(message.author.id)
        images, files, notes = await self._save_attachments(message)
        text = "\n".join([_strip_mention(message.content, bot_id), *notes]).strip()
        return Inbound(channel=self.ctx.label, chat_id=str(message.channel.id), sender_id=sender, text=text,
                       message_id=str(message.id), images=tuple(images), attachments=tuple(files),
                       is_owner=owner, scope=scope_key(self.config.session_scope, self.ctx.label, sender))

    async def _save_attachments(self, message: discord.Message) -> tuple[list[str], list[str], list[str]]:
        """Download into the inbox: (image paths, other file paths, notes about failed downloads)."""
        import aiohttp
        import discord

        images: list[str] = []
        files: list[str] = []
        notes: list[str] = []
        for att in message.attachments:
            try:
                path = await self._download(message.id, att)
            except (discord.DiscordException, aiohttp.ClientError, OSError, TimeoutError, ChannelError) as exc:
                logger.warning("Discord %s: attachment %s of message %s: %s", self.name, att.id, message.id, exc)
                notes.append(f"[Attachment {att.filename!r} could not be downloaded: {exc or type(exc).__name__}]")
                continue
            (images if (att.content_type or "").startswith("image/") else files).append(str(path))
        return images, files, notes

    async def _download(self, message_id: int, att: discord.Attachment) -> Path:
        if att.size > MAX_DOWNLOAD:
            raise ChannelError(f"it is larger than {MAX_DOWNLOAD // 2**20} MB")
        data = await asyncio.wait_for(att.read(), timeout=120)
        path = inbox_path(self.ctx.inbox, f"discord-{message_id}-{att.id}-{safe_name(att.filename)}")
        await asyncio.to_thread(_write_private, path, data)
        return path

    # typing indicator

    def _start_typing(self, channel: discord.abc.Messageable, key: str) -> None:
        if self._stopping:
            return
        old = self._typing.pop(key, None)
        if old is not None:
            old.cancel()
        task = asyncio.create_task(self._keep_typing(channel), name=f"discord typing {key}")
        self._typing[key] = task
        task.add_done_callback(lambda done: self._typing.pop(key, None) if self._typing.get(key) is done else None)

    def _stop_typing(self, chat_id: str) -> None:
        task = self._typing.pop(chat_id, None)
        if task is not None:
            task.cancel()

    async def _keep_typing(self, channel: discord.abc.Messageable) -> None:
        import aiohttp
        import discord

        deadline = time.monotonic() + TYPING_FOR
        try:
            while time.monotonic() < deadline:
                await channel.typing()  # one POST /channels/{id}/typing
                await asyncio.sleep(TYPING_EVERY)
        except (discord.DiscordException, aiohttp.ClientError, OSError, TimeoutError) as exc:
            logger.debug("Discord %s: typing indicator stopped: %s", self.name, exc)

    # outbound

    async def send(self, out: Outbound) -> str | None:
        if out.kind not in SENT_KINDS:
            return None
        if out.kind in ("reply", "error"):
            self._stop_typing(out.chat_id)
        client = self._client
        if client is None:
            raise self._failed(DeliveryError(f"Discord channel {self.name} is not connected.", retryable=True))
        target = _snowflake(out.thread_id or out.chat_id)
        if target is None:
            raise self._failed(DeliveryError(f"{out.chat_id!r} is not a Discord channel id.", retryable=False))
        channel = client.get_partial_messageable(target)
        parts = split_text(out.text, MESSAGE_LIMIT)
        done, last_id = self._progress.get(out, (0, None))
        for index in range(done, len(parts)):
            last_id = await self._send_part(channel, out, parts[index], index)
            self._remember(out, (index + 1, last_id))
        self._progress.pop(out, None)
        return last_id

    async def _send_part(self, channel: discord.PartialMessageable, out: Outbound, text: str, index: int) -> str:
        import aiohttp
        import discord

        options: dict[str, Any] = {"allowed_mentions": _no_mentions()}
        reply_to = _snowflake(out.reply_to) if index == 0 else None
        if reply_to is not None:
            options["reference"] = discord.MessageReference(message_id=reply_to, channel_id=channel.id,
                                                            fail_if_not_exists=False)
        if out.turn_id:
            options["nonce"] = _nonce(out.turn_id, out, index)
        try:
            sent = await channel.send(text, **options)
        except (discord.DiscordException, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise self._failed(_delivery_error(exc, out.chat_id)) from exc
        return str(sent.id)

    def _remember(self, out: Outbound, progress: tuple[int, str | None]) -> None:
        self._progress[out] = progress
        while len(self._progress) > MAX_PROGRESS:
            self._progress.pop(next(iter(self._progress)))

    def _failed(self, error: DeliveryError) -> DeliveryError:
        self.state.last_error = str(error)
        logger.warning("Discord %s: %s", self.name, error)
        return error


def _no_mentions() -> discord.AllowedMentions:
    import discord

    return discord.AllowedMentions.none()


def _nonce(turn_id: str, out: Outbound, index: int) -> str:
    """The same part of the same Outbound gets the same nonce, so Discord drops a repeat (enforce_nonce),
    e.g. a retry after a send that went through but whose answer was lost."""
    key = "\x1f".join((turn_id, out.chat_id, out.kind, out.text))
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{digest[:20]}{index:05d}"  # 25 characters, Discord's maximum


def _addressed(message: discord.Message, bot_id: int) -> bool:
    """The bot was mentioned, or the message replies to one of the bot's messages."""
    if any(user.id == bot_id for user in message.mentions):
        return True
    ref = message.reference
    if ref is None:
        return False
    earlier = ref.resolved or ref.cached_message
    author = getattr(earlier, "author", None)
    return getattr(author, "id", None) == bot_id


def _strip_mention(text: str, bot_id: int) -> str:
    return re.sub(rf"^\s*<@!?{bot_id}>[\s,:]*", "", text)


def _snowflake(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def _delivery_error(exc: BaseException, chat: str) -> DeliveryError:
    import discord

    if isinstance(exc, discord.RateLimited):
        return DeliveryError(f"Discord rate limit: retry in {exc.retry_after:.0f} s.", retry_after=exc.retry_after)
    if isinstance(exc, discord.Forbidden):
        return DeliveryError(f"Discord refused to post in channel {chat} (403): the bot lacks permission there, "
                             "or the person does not accept direct messages.", retryable=False)
    if isinstance(exc, discord.NotFound):
        return DeliveryError(f"Discord channel {chat} does not exist or the bot cannot see it (404).",
                             retryable=False)
    if isinstance(exc, discord.HTTPException):
        retryable = exc.status >= 500 or exc.status == 429
        return DeliveryError(f"Discord answered {exc.status} for channel {chat}: {exc.text or exc}",
                             retryable=retryable)
    return DeliveryError(f"Could not reach Discord ({type(exc).__name__}: {exc}).", retryable=True)


def _start_error(exc: BaseException | None, timeout: float) -> ChannelError:
    import discord

    if isinstance(exc, discord.LoginFailure):
        return ChannelError(TOKEN_REJECTED)
    if isinstance(exc, discord.PrivilegedIntentsRequired):
        return ChannelError(INTENT_REFUSED)
    if isinstance(exc, discord.ConnectionClosed) and exc.code == 4004:
        return ChannelError(TOKEN_REJECTED)
    if isinstance(exc, discord.HTTPException):
        return ChannelError(f"Discord login failed ({exc.status}): {exc.text or exc}")
    if exc is not None:
        return ChannelError(f"Cannot connect to Discord ({type(exc).__name__}: {exc}). Check the network.")
    return ChannelError(f"Discord did not become ready within {timeout:.0f} s. Check the network "
                        "(is the gateway reachable?) and the token.")


def safe_name(filename: str) -> str:
    """A file name that cannot leave the inbox: no separators, no leading dots, at most 100 characters."""
    base = re.split(r"[\\/]", filename)[-1]
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", base)[-100:].lstrip(".")
    return cleaned or "file"


def inbox_path(inbox: Path, name: str) -> Path:
    path = (inbox / name).resolve()
    if path.parent != inbox.resolve():
        raise ChannelError(f"refusing the file name {name!r}")
    return path


def _write_private(path: Path, data: bytes) -> None:
    """Owner-only, replaced atomically: a redelivered message rewrites the same name without a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
