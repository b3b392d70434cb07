"""Helpers of the Telegram adapter: Markdown → Telegram HTML, reply parts, command and mention
clean-up, safe file names, and the per-chat send budget.

    render_parts("**Hi** <you>")     # [Part(html="<b>Hi</b> &lt;you&gt;", plain="**Hi** <you>")]
    clean_command("/new@mybot", "mybot")   # "/new"   (None: the command is for another bot)
    strip_mention("@mybot what's up", "mybot")  # "what's up"
    safe_name("../../etc/passwd")    # "passwd"

Telegram's HTML mode knows few tags (b, i, s, code, pre, a, blockquote) and rejects anything
unbalanced, so everything that is not one of our own tags is escaped; a part Telegram still refuses
is resent as plain text by the adapter (``Part.plain``).
"""

from __future__ import annotations

import asyncio
import html
import re
import time
from dataclasses import dataclass

from channels.base import split_text

MAX_MESSAGE = 4096  # Telegram's limit for one message
PART_LIMIT = 3800  # split the Markdown here, leaving room for the tags formatting adds

_FENCE_LINE = re.compile(r"^\s*(```|~~~)\s*([\w+#.-]*)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")
_BULLET = re.compile(r"^(\s*)[-*+]\s+(.*)$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_LINK = re.compile(r"\[([^\]\n]+)\]\(((?:https?://|tg://|mailto:)[^)\s]+)\)")
_BOLD = re.compile(r"\*\*(?!\s)(.+?)(?<!\s)\*\*|__(?!\s)(.+?)(?<!\s)__")
_ITALIC = re.compile(r"(?<![\w*])\*(?![\s*])(.+?)(?<![\s*])\*(?![\w*])|(?<![\w_])_(?![\s_])(.+?)(?<![\s_])_(?![\w_])")
_STRIKE = re.compile(r"~~(?!\s)(.+?)(?<!\s)~~")
_SLOT = re.compile("\x00(\\d+)\x00")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Part:
    html: str  # what is sent with parse_mode="HTML"
    plain: str  # the same part as written, for the plain-text fallback


def render_parts(text: str, limit: int = PART_LIMIT) -> list[Part]:
    """``text`` split into messages whose HTML stays under Telegram's limit (escaping can grow a part)."""
    parts: list[Part] = []
    for piece in split_text(text.replace("\x00", ""), limit):
        rendered = to_html(piece)
        if len(rendered) < MAX_MESSAGE or limit <= 200:
            parts.append(Part(rendered, piece))
        else:
            parts.extend(render_parts(piece, limit // 2))
    return parts


def to_html(text: str) -> str:
    """Markdown as Telegram HTML: fenced blocks become <pre><code>, the rest line by line."""
    out: list[str] = []
    code: list[str] | None = None
    lang = fence = ""
    for line in text.split("\n"):
        match = _FENCE_LINE.match(line)
        if code is None and match:
            code, fence, lang = [], match.group(1), match.group(2)
        elif code is not None and match and line.strip() == fence:
            out.append(_pre(code, lang))
            code = None
        elif code is not None:
            code.append(line)
        else:
            out.append(_line(line))
    if code is not None:  # an unclosed block runs to the end
        out.append(_pre(code, lang))
    return "\n".join(out)


def _pre(lines: list[str], lang: str) -> str:
    body = _escape("\n".join(lines))
    if lang:
        return f'<pre><code class="language-{_escape(lang, quote=True)}">{body}</code></pre>'
    return f"<pre>{body}</pre>"


def _line(line: str) -> str:
    heading = _HEADING.match(line)
    if heading:
        return f"<b>{inline(heading.group(1).replace('**', ''))}</b>"
    bullet = _BULLET.match(line)
    if bullet:
        return f"{bullet.group(1)}• {inline(bullet.group(2))}"
    return inline(line)


def inline(text: str) -> str:
    """One line: `code`, [links](url), **bold**, *italic*, ~~strike~~; everything else escaped."""
    slots: list[str] = []

    def stash(value: str) -> str:
        slots.append(value)
        return f"\x00{len(slots) - 1}\x00"

    text = _CODE_SPAN.sub(lambda m: stash(f"<code>{_escape(m.group(2).strip())}</code>"), text)
    text = _LINK.sub(lambda m: stash(f'<a href="{_escape(m.group(2), quote=True)}">{_escape(m.group(1))}</a>'),
                     text)
    text = _escape(text)
    text = _BOLD.sub(lambda m: f"<b>{m.group(1) or m.group(2)}</b>", text)
    text = _ITALIC.sub(lambda m: f"<i>{m.group(1) or m.group(2)}</i>", text)
    text = _STRIKE.sub(lambda m: f"<s>{m.group(1)}</s>", text)
    return _SLOT.sub(lambda m: slots[int(m.group(1))], text)


def _escape(text: str, *, quote: bool = False) -> str:
    return html.escape(text, quote=quote)


def clean_command(text: str, username: str) -> str | None:
    """"/new@mybot args" → "/new args"; None when the command names another bot."""
    if not text.startswith("/"):
        return text
    word, sep, rest = text.partition(" ")
    command, at, target = word.partition("@")
    if not at:
        return text
    if target.lower() != username.lower():
        return None
    return command + sep + rest


def strip_mention(text: str, username: str) -> str:
    """Drop a leading "@mybot" (and the comma or colon after it) from a group message."""
    pattern = re.compile(rf"^\s*@{re.escape(username)}\b[\s,:]*", re.IGNORECASE)
    return pattern.sub("", text, count=1)


def safe_name(name: str, default: str = "file") -> str:
    """A file name that stays inside the folder it is joined to: no separators, no leading dots."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE_NAME.sub("_", base).lstrip("._")[-100:]
    return cleaned or default


@dataclass(frozen=True)
class Rate:
    per_second: float
    burst: float = 1.0


@dataclass
class _Bucket:
    tokens: float
    stamp: float  # time.monotonic() of the last refill
    paused_until: float = 0.0


class ChatBudget:
    """One token bucket per chat for every call that sends to it (messages and chat actions).

    Telegram allows about one message a second in a private chat and twenty a minute in a group
    (group ids are negative); a ``retry_after`` pauses the chat for that long.
    """

    def __init__(self, private: Rate = Rate(1.0, 3), group: Rate = Rate(20 / 60, 3)) -> None:
        self.private, self.group = private, group
        self._buckets: dict[str, _Bucket] = {}

    async def take(self, chat: str) -> None:
        while True:
            wait = self._wait(chat)
            if wait <= 0:
                self._buckets[chat].tokens -= 1
                return
            await asyncio.sleep(wait)

    def try_take(self, chat: str) -> bool:
        if self._wait(chat) > 0:
            return False
        self._buckets[chat].tokens -= 1
        return True

    def pause(self, chat: str, seconds: float) -> None:
        self._wait(chat)
        self._buckets[chat].paused_until = time.monotonic() + seconds

    def _rate(self, chat: str) -> Rate:
        return self.group if chat.startswith("-") else self.private

    def _wait(self, chat: str) -> float:
        """Refill ``chat``'s bucket; the seconds until it holds a token (0: one is there)."""
        rate, now = self._rate(chat), time.monotonic()
        if chat not in self._buckets and len(self._buckets) >= 1000:
            self._forget_idle(now)
        bucket = self._buckets.setdefault(chat, _Bucket(rate.burst, now))
        bucket.tokens = min(rate.burst, bucket.tokens + (now - bucket.stamp) * rate.per_second)
        bucket.stamp = now
        if bucket.paused_until > now:
            return bucket.paused_until - now
        return 0.0 if bucket.tokens >= 1 else (1 - bucket.tokens) / rate.per_second

    def _forget_idle(self, now: float) -> None:
        """Drop buckets that have refilled completely: a new one starts full, so nothing changes."""
        def idle(chat: str, b: _Bucket) -> bool:
            rate = self._rate(chat)
            return b.paused_until <= now and b.tokens + (now - b.stamp) * rate.per_second >= rate.burst
        self._buckets = {c: b for c, b in self._buckets.items() if not idle(c, b)}
