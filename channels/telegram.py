"""Telegram through python-telegram-bot (long polling), imported only when the channel starts.

    adapter = TelegramAdapter(config.channels[0], ctx)
    await adapter.start()     # getMe, then long polling for "message" updates; ChannelError if refused
    await adapter.send(Outbound("telegram", "42", "**Done.**", reply_to="7"))   # → "101"
    await adapter.stop()

Inbound: each message (edits and bots ignored) is checked by ``ctx.access``, its photo or file saved
under ``ctx.inbox``, and published; while the agent works the chat shows "typing…". Outbound: Markdown
becomes Telegram HTML in parts under 4,096 characters, paced by one budget per chat; a part Telegram
cannot parse goes again as plain text, ``retry_after`` is honoured, and a retried ``Outbound``
continues after the parts already delivered instead of sending them twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from agent.bus import Inbound, Outbound
from agent.config import TelegramChannel
from agent.errors import ChannelError
from channels.access import Who
from channels.base import ChannelContext, DeliveryError, scope_key
from channels.telegram_format import ChatBudget, Part, Rate, clean_command, render_parts, safe_name, strip_mention

if TYPE_CHECKING:
    from telegram import Bot, Message, Update
    from telegram.error import RetryAfter, TelegramError
    from telegram.ext import Application
    from telegram.request import BaseRequest

logger = logging.getLogger(__name__)

SENT_KINDS = ("reply", "error", "notice")
MAX_RETRIES = 3  # retry_after waits per part before the send is handed back as retryable
_PROGRESS_KEPT = 256


class TelegramAdapter:
    poll_timeout = 30.0  # seconds one getUpdates long poll may wait
    typing_interval = 4.0  # Telegram shows "typing…" for about five seconds per chat action
    typing_limit = 600.0

    def __init__(self, config: TelegramChannel, ctx: ChannelContext) -> None:
        self.config, self.ctx = config, ctx
        self.name = config.label
        self.state = ctx.state
        self.budget = ChatBudget()
        self.typing_budget = ChatBudget(Rate(0.25, 1), Rate(0.25, 1))  # chat actions: not the message budget
        self._app: Application[Any, Any, Any, Any, Any, Any] | None = None
        self._typing: dict[tuple[str, str | None], asyncio.Task[None]] = {}
        self._answered: dict[str, float] = {}  # chat → time.monotonic() of the last reply or error
        self._progress: OrderedDict[tuple[str, ...], tuple[int, str | None]] = OrderedDict()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            from telegram.ext import Application, MessageHandler, filters
        except ImportError as exc:
            raise self._down(f"Channel {self.name!r} needs python-telegram-bot: pip install "
                             "'python-telegram-bot>=22,<23'.") from exc
        if not self.config.token.strip():
            raise self._down(f"Channel {self.name!r} has no Telegram token. Set channels[].token or "
                             "TELEGRAM_BOT_TOKEN to the token from @BotFather.")
        # PTB 22 warns on every RetryAfter that retry_after will become a timedelta; _seconds takes both.
        warnings.filterwarnings("ignore", message=r"(?s).*`retry_after` will be of type")
        # PTB sends over one pooled connection by default; replies to many chats would queue behind each other
        from channels.telegram_updates import PerChatOrder

        builder = (Application.builder().token(self.config.token).job_queue(None).connection_pool_size(32)
                   .concurrent_updates(PerChatOrder()).get_updates_request(_watched_polling(self._poll_ok)))
        if self.config.base_url:
            base = self.config.base_url.rstrip("/")
            files = base[: -len("/bot")] + "/file/bot" if base.endswith("/bot") else base + "/file/bot"
            builder = builder.base_url(base).base_file_url(files)
        app = builder.build()
        app.add_handler(MessageHandler(filters.UpdateType.MESSAGE, self._on_message))
        self._app = app  # set first: updates waiting at Telegram may be handled before polling returns
        try:
            await self._connect(app)
        except ChannelError:
            self._app = None
            raise
        self.state.up()

    async def _connect(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        from telegram.error import InvalidToken, TelegramError

        try:
            await app.initialize()
        except InvalidToken as exc:
            await app.bot.shutdown()
            raise self._down(f"Telegram rejected the token (401) of channel {self.name!r}. Set channels[].token "
                             "or TELEGRAM_BOT_TOKEN to the token from @BotFather.") from exc
        except TelegramError as exc:
            await app.bot.shutdown()
            raise self._down(f"Cannot reach the Telegram Bot API for channel {self.name!r} ({exc}). Check the "
                             "network, or channels[].base_url if you set one.") from exc
        try:
            await app.start()
            assert app.updater is not None  # the builder always makes one
            await app.updater.start_polling(poll_interval=0, timeout=timedelta(seconds=self.poll_timeout),
                                            drop_pending_updates=False, allowed_updates=["message"],
                                            error_callback=self._on_poll_error)
        except TelegramError as exc:
            await self._close(app)
            raise self._down(f"Telegram polling could not start for channel {self.name!r}: {exc}") from exc

    async def stop(self) -> None:
        app = self._app
        tasks = list(self._typing.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._typing.clear()
        if app is not None:
            await self._close(app)  # updates already fetched are still handed over while it closes
            self._app = None
            self.state.connected = False

    async def _close(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        from telegram.error import TelegramError

        try:
            if app.updater is not None and app.updater.running:
                await app.updater.stop()
            if app.running:
                await app.stop()
            await app.shutdown()
        except TelegramError as exc:
            logger.warning("Telegram channel %s did not shut down cleanly: %s", self.name, exc)

    def _down(self, message: str) -> ChannelError:
        self.state.down(message)
        return ChannelError(message)

    def _on_poll_error(self, exc: TelegramError) -> None:
        logger.warning("Telegram polling for %s failed: %s", self.name, exc)
        self.state.down(f"Telegram polling failed: {exc}")

    def _poll_ok(self) -> None:
        if self._app is not None and not self.state.connected:
            logger.info("Telegram polling for %s works again", self.name)
            self.state.up()

    def _bot(self) -> Bot:
        if self._app is None:
            raise DeliveryError(f"Telegram channel {self.name!r} is not running.", retryable=True)
        return self._app.bot

    # -- inbound -------------------------------------------------------------------------------

    async def _on_message(self, update: Update, _context: object) -> None:
        try:
            await self._handle(update)
        except Exception:  # a supervision boundary: PTB must keep polling
            logger.exception("Telegram update %s on %s could not be handled", update.update_id, self.name)

    async def _handle(self, update: Update) -> None:
        message, bot = update.message, self._bot()
        if message is None or message.from_user is None or message.from_user.is_bot:
            return
        user, chat_id = message.from_user, str(message.chat.id)
        text = clean_command(message.text or message.caption or "", bot.username)
        if text is None:
            return  # a command for another bot in the same group
        is_group = message.chat.type in ("group", "supergroup")
        thread = str(message.message_thread_id) if message.is_topic_message and message.message_thread_id else None
        who = Who(str(user.id), chat_id, is_group, not is_group or _addressed(message, bot),
                  user.username or user.first_name)
        decision = self.ctx.access.check(who)
        if not decision.allowed:
            if decision.reply:
                await self._notify(chat_id, decision.reply, thread)
            return
        if not self.state.connected:
            self.state.up()
        self.state.last_message = time.time()
        images, files, notes = await self._download(message, chat_id)
        inbound = Inbound(
            channel=self.ctx.label, chat_id=chat_id, sender_id=who.sender, message_id=str(message.message_id),
            text="\n".join([strip_mention(text, bot.username) if is_group else text, *notes]).strip(),
            thread_id=thread, images=images, attachments=files, is_owner=decision.owner,
            scope=scope_key(self.config.session_scope, self.ctx.label, who.sender))
        received = time.monotonic()
        if await self.ctx.publish(inbound) and self._answered.get(chat_id, 0.0) < received:
            self._start_typing(chat_id, thread)  # unless the answer already went out while we published

    async def _notify(self, chat: str, text: str, thread: str | None) -> None:
        """A plain message outside any turn (a pairing code): logged, never raised."""
        from telegram.error import TelegramError

        try:
            await self.budget.take(chat)
            await self._bot().send_message(chat, text, message_thread_id=_int(thread))
        except TelegramError as exc:
            logger.warning("Telegram could not tell chat %s on %s: %s", chat, self.name, exc)

    async def _download(self, message: Message, chat: str) -> tuple[tuple[str, ...], tuple[str, ...], list[str]]:
        """Save a photo (→ images) or a document, audio or voice note (→ attachments) in the inbox."""
        images: list[str] = []
        files: list[str] = []
        notes: list[str] = []
        prefix = f"telegram-{chat}-{message.message_id}"
        if message.photo:
            largest = max(message.photo, key=lambda p: (p.width * p.height, p.file_size or 0))
            await self._fetch(largest.file_id, f"{prefix}.jpg", "photo", images, notes)
        for item, name in ((message.document, None), (message.audio, None), (message.voice, "voice.ogg")):
            if item is not None:
                file_name = getattr(item, "file_name", None) or name or "file"
                await self._fetch(item.file_id, f"{prefix}-{safe_name(file_name)}", file_name, files, notes)
        return tuple(images), tuple(files), notes

    async def _fetch(self, file_id: str, name: str, what: str, saved: list[str], notes: list[str]) -> None:
        from telegram.error import TelegramError

        inbox = self.ctx.inbox.resolve()
        target = inbox / name
        try:
            if target.parent != inbox:  # names come from safe_name(); this keeps it that way
                raise OSError(f"{name!r} would be saved outside the inbox")
            inbox.mkdir(parents=True, exist_ok=True)
            file = await self._bot().get_file(file_id)
            await file.download_to_drive(target)
        except (TelegramError, OSError, RuntimeError) as exc:
            logger.warning("Telegram download of %s on %s failed: %s", name, self.name, exc)
            notes.append(f"[The attached {what} could not be downloaded.]")
            return
        saved.append(str(target))

    # -- typing indicator ------------------------------------------------------------------------

    def _start_typing(self, chat: str, thread: str | None) -> None:
        task = self._typing.get((chat, thread))
        if task is None or task.done():
            self._typing[(chat, thread)] = asyncio.create_task(self._type(chat, thread), name=f"typing {chat}")

    def _stop_typing(self, chat: str, thread: str | None) -> None:
        # Unregistered, not cancelled: it stops before its next action. Cancelling a request in flight can
        # lose a connection from httpx's pool for good (encode/httpcore#1093), and then every send waits.
        for key in [k for k in self._typing if k[0] == chat and (thread is None or k[1] == thread)]:
            del self._typing[key]

    async def _type(self, chat: str, thread: str | None) -> None:
        from telegram.error import TelegramError

        until = time.monotonic() + self.typing_limit
        try:
            while time.monotonic() < until and self._typing.get((chat, thread)) is asyncio.current_task():
                if self.typing_budget.try_take(chat):  # chat actions never take from the replies' budget
                    try:
                        await self._bot().send_chat_action(chat, "typing", message_thread_id=_int(thread))
                    except TelegramError as exc:
                        logger.debug("Telegram chat action for %s failed: %s", chat, exc)
                await asyncio.sleep(self.typing_interval)
        except DeliveryError:
            pass  # the channel stopped
        except Exception:  # the task's owner is this adapter: log, never lose it silently
            logger.exception("Telegram typing indicator for %s failed", chat)
        finally:
            if self._typing.get((chat, thread)) is asyncio.current_task():
                del self._typing[(chat, thread)]

    # -- outbound --------------------------------------------------------------------------------

    async def send(self, out: Outbound) -> str | None:
        if out.kind not in SENT_KINDS or not out.text.strip():
            return None
        if out.kind in ("reply", "error"):
            self._answered[out.chat_id] = time.monotonic()
            self._stop_typing(out.chat_id, out.thread_id)
        bot = self._bot()
        key = (out.turn_id or "", out.chat_id, out.thread_id or "", out.kind, str(hash(out.text)))
        done, last = self._progress.get(key, (0, None))
        parts = render_parts(out.text)
        for index in range(done, len(parts)):
            last = await self._send_part(bot, out, parts[index], out.reply_to if index == 0 else None)
            self._progress[key] = (index + 1, last)  # a retry of this Outbound starts after this part
            self._progress.move_to_end(key)
            while len(self._progress) > _PROGRESS_KEPT:
                self._progress.popitem(last=False)
        self._progress.pop(key, None)
        return last

    async def _send_part(self, bot: Bot, out: Outbound, part: Part, reply_to: str | None) -> str:
        from telegram.error import RetryAfter, TelegramError

        for attempt in range(MAX_RETRIES + 1):
            await self.budget.take(out.chat_id)  # also waits out a retry_after pause
            try:
                return await self._post(bot, out, part, reply_to)
            except RetryAfter as exc:
                wait = _seconds(exc)
                self.budget.pause(out.chat_id, wait)
                if attempt == MAX_RETRIES:
                    raise self._failed(f"Telegram flood control still limits chat {out.chat_id} after "
                                       f"{MAX_RETRIES} retries; retry in {wait:g} s.", True, wait) from exc
                logger.info("Telegram asks to wait %.2f s before sending to %s", wait, out.chat_id)
            except TelegramError as exc:
                raise self._translate(exc, out.chat_id) from exc
        raise AssertionError("unreachable")

    async def _post(self, bot: Bot, out: Outbound, part: Part, reply_to: str | None) -> str:
        from telegram import ReplyParameters
        from telegram.error import BadRequest

        reply_id = _int(reply_to)
        reply = ReplyParameters(reply_id, allow_sending_without_reply=True) if reply_id else None
        try:
            sent = await bot.send_message(out.chat_id, part.html, parse_mode="HTML", reply_parameters=reply,
                                          message_thread_id=_int(out.thread_id))
        except BadRequest as exc:
            if "can't parse entities" not in str(exc).lower():
                raise
            logger.warning("Telegram could not parse our HTML (%s); sending the part as plain text", exc)
            await self.budget.take(out.chat_id)
            sent = await bot.send_message(out.chat_id, part.plain, reply_parameters=reply,
                                          message_thread_id=_int(out.thread_id))
        if not self.state.connected:
            self.state.up()
        return str(sent.message_id)

    def _translate(self, exc: TelegramError, chat: str) -> DeliveryError:
        from telegram.error import BadRequest, ChatMigrated, Forbidden, InvalidToken, NetworkError

        if isinstance(exc, Forbidden):
            return self._failed(f"Telegram refused delivery to chat {chat} ({exc.message}); the bot may be "
                                "blocked or no longer in the chat.", False)
        if isinstance(exc, ChatMigrated):
            return self._failed(f"Telegram chat {chat} is now the supergroup {exc.new_chat_id}; allow that "
                                "id instead.", False)
        if isinstance(exc, BadRequest):  # before NetworkError: BadRequest is one in PTB
            return self._failed(f"Telegram rejected the message for chat {chat}: {exc.message}", False)
        if isinstance(exc, InvalidToken):
            return self._failed(f"Telegram rejected the token (401) of channel {self.name!r}.", False)
        if isinstance(exc, NetworkError):
            return self._failed(f"Telegram could not be reached to deliver to chat {chat}: {exc.message}", True)
        return self._failed(f"Telegram failed to deliver to chat {chat}: {exc.message}", True)

    def _failed(self, message: str, retryable: bool, retry_after: float | None = None) -> DeliveryError:
        self.state.last_error = message
        return DeliveryError(message, retryable=retryable, retry_after=retry_after)


def _addressed(message: Message, bot: Bot) -> bool:
    """In a group: the bot is @mentioned, replied to, or named in a /command@bot."""
    reply = message.reply_to_message
    if reply is not None and reply.from_user is not None and reply.from_user.id == bot.id:
        topic_root = message.is_topic_message and reply.message_id == message.message_thread_id
        if not topic_root:  # in a forum every message "replies" to the topic's first message
            return True
    handle = f"@{bot.username}".lower()
    entities = message.parse_entities() if message.text else message.parse_caption_entities()
    for entity, value in entities.items():
        if entity.type == "mention" and value.lower() == handle:
            return True
        if entity.type == "text_mention" and entity.user is not None and entity.user.id == bot.id:
            return True
        if entity.type == "bot_command" and value.lower().endswith(handle):
            return True
    return False


def _watched_polling(on_success: Callable[[], None]) -> BaseRequest:
    """The getUpdates transport, reporting each poll that gets through: a channel marked down by a
    failed poll is up again as soon as polling works, not only when the next message arrives."""
    from telegram.request import HTTPXRequest

    from channels.telegram_updates import readable_updates

    class WatchedRequest(HTTPXRequest):
        async def do_request(self, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
            code, payload = await super().do_request(*args, **kwargs)
            if code == 200:
                on_success()
                payload = readable_updates(payload)
            return code, payload

    return WatchedRequest()


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _seconds(exc: RetryAfter) -> float:
    value = exc.retry_after  # seconds today, a timedelta with PTB_TIMEDELTA=1 (and in PTB 23)
    return value.total_seconds() if isinstance(value, timedelta) else float(value)
