"""Text for and from Slack: Markdown → mrkdwn, incoming text clean-up, safe file names.

    to_mrkdwn("**Hi** [docs](https://x.io) <you>")   # "*Hi* <https://x.io|docs> &lt;you&gt;"
    from_slack("<@UBOT> a &lt; b", "UBOT")             # "a < b"
    safe_name("../../etc/passwd")                       # "passwd"
    inbox_path(inbox, "1700.01", "F1", "../x.png")      # inbox / "slack-1700.01-F1-x.png"

Slack's mrkdwn is not Markdown: bold is ``*x*``, italics ``_x_``, strike ``~x~``, links
``<url|text>``, and there are no headings. ``&``, ``<`` and ``>`` must be sent as entities everywhere
(also inside code, where Slack shows them decoded), except in the control sequences we write
ourselves (``<url|text>`` and the ``>`` that starts a quote), so text can never turn into a mention
or a link by accident.
"""

from __future__ import annotations

import re
from pathlib import Path

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")
_BULLET = re.compile(r"^(\s*)[-*+]\s+(?=\S)")
_QUOTE = re.compile(r"^(\s*)>\s?")
_STRONG = re.compile(r"\*\*|__")
_INLINE = re.compile(
    r"(?P<tick>`+)(?P<code>.+?)(?P=tick)"
    r"|\[(?P<label>[^\]\n]+)\]\((?P<url>[^)\s]+)(?:\s+\"[^\"]*\")?\)"
    r"|<(?P<auto>(?:https?|mailto):[^>\s]+)>"
    r"|\*\*\*(?!\s)(?P<both>.+?)(?<!\s)\*\*\*"
    r"|\*\*(?!\s)(?P<bold>.+?)(?<!\s)\*\*"
    r"|__(?!\s)(?P<under>.+?)(?<!\s)__"
    r"|~~(?!\s)(?P<strike>.+?)(?<!\s)~~"
    r"|(?<![\w*])\*(?![\s*])(?P<em>.+?)(?<![\s*])\*(?![\w*])"
)
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def escape(text: str) -> str:
    """Slack's three entities; nothing else is encoded (Slack would show it literally)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_mrkdwn(markdown: str) -> str:
    """Markdown as a model writes it → Slack mrkdwn. Code blocks keep their text (escaped only)."""
    out: list[str] = []
    in_code = False
    for line in markdown.split("\n"):
        if _FENCE.match(line):
            in_code = not in_code
            out.append("```")  # Slack shows a language tag as code, so drop it
        elif in_code:
            out.append(escape(line))
        else:
            out.append(_line(line))
    return "\n".join(out)


def _line(line: str) -> str:
    heading = _HEADING.match(line)
    if heading:
        return f"*{_inline(_STRONG.sub('', heading.group(1)))}*"  # the whole heading is bold already
    quote = _QUOTE.match(line)
    if quote:
        return f"{quote.group(1)}>{' ' if line[quote.end():] else ''}{_line(line[quote.end():])}".rstrip()
    bullet = _BULLET.match(line)
    if bullet:
        return f"{bullet.group(1)}• {_inline(line[bullet.end():])}"
    return _inline(line)


def _inline(text: str) -> str:
    parts: list[str] = []
    at = 0
    for match in _INLINE.finditer(text):
        parts.append(escape(text[at:match.start()]))
        parts.append(_convert(match))
        at = match.end()
    parts.append(escape(text[at:]))
    return "".join(parts)


def _convert(match: re.Match[str]) -> str:
    found = match.groupdict()
    if found["code"] is not None:
        return f"`{escape(found['code'])}`"
    if found["url"] is not None:
        label = found["label"].replace("|", "¦")  # a "|" would end Slack's link text early
        return f"<{escape(found['url'])}|{escape(label)}>"
    if found["auto"] is not None:
        return f"<{escape(found['auto'])}>"
    if found["both"] is not None:
        return f"*_{_inline(found['both'])}_*"
    if found["bold"] is not None:
        return f"*{_inline(found['bold'])}*"
    if found["strike"] is not None:
        return f"~{_inline(found['strike'])}~"
    return f"_{_inline(found['under'] or found['em'])}_"


def from_slack(text: str, bot_user_id: str | None) -> str:
    """Incoming message text: a leading mention of the bot removed, Slack's entities decoded."""
    if bot_user_id:
        text = re.sub(rf"^\s*<@{re.escape(bot_user_id)}(?:\|[^>]*)?>[\s,:]*", "", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").strip()


def safe_name(name: str, fallback: str = "file") -> str:
    """A file name that cannot leave the directory it is written to (no separators, no leading dot)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE_NAME.sub("_", base).lstrip("._")[-100:]
    return cleaned or fallback


def inbox_path(inbox: Path, ts: str, file_id: str, name: str) -> Path:
    """Where a shared file is saved: named by message and file id, always directly in ``inbox``."""
    path = inbox / f"slack-{safe_name(ts)}-{safe_name(file_id, 'F')}-{safe_name(name)}"
    if path.resolve().parent != inbox.resolve():
        raise ValueError(f"refusing to save a Slack file outside the inbox: {name!r}")
    return path
