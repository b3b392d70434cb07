"""The ``remember`` and ``forget`` tools: the model records or deletes one fact when the owner asks.

    register(store, registry, secrets=config_secrets)
"""

from __future__ import annotations

from collections.abc import Iterable

from agent.errors import MemoryStoreError, ToolError
from agent.logs import Masker
from agent.tools.registry import ToolContext, ToolRegistry
from memory.store import MemoryStore
from memory.validate import MARKUP

DEFAULT_SECTION = "About the owner"
MAX_FACT_CHARS = 500


def register(store: MemoryStore, registry: ToolRegistry, secrets: Iterable[str] = ()) -> None:
    """Add ``remember`` and ``forget``; facts containing any of ``secrets`` (API keys, tokens) are refused."""
    known = {s for s in secrets if s}
    mask = Masker(known)  # also anything shaped like an API key or a bot token

    async def remember(ctx: ToolContext, fact: str, section: str | None = None) -> str:
        """Record one durable fact about the owner in long-term memory.
        Use it when the owner asks you to remember something.

        Args:
            fact: One short, self-contained sentence, e.g. "Prefers tea over coffee"
                or "Sister Ana lives in Porto".
            section: Where it belongs: "About the owner" (the default), "People", "Projects",
                "Preferences", or a new title.
        """
        fact = _check_fact(fact, mask)
        section = (section or DEFAULT_SECTION).strip()
        if "\n" in section or len(section) > 80 or mask(section) != section:
            raise ToolError("The section must be one short line (at most 80 characters), e.g. \"People\".")
        source = ctx.inbound.channel if ctx.inbound else "terminal"
        try:
            sha = await store.remember(fact, section or DEFAULT_SECTION, source)
        except MemoryStoreError as exc:
            raise ToolError(str(exc)) from exc
        if not sha:
            return f"Already remembered: {fact}"
        return f"Remembered under {section or DEFAULT_SECTION}: {fact}"

    async def forget(ctx: ToolContext, fact: str) -> str:
        """Delete one fact from long-term memory, when the owner asks you to forget it or it is wrong.
        To correct a fact, forget the old one, then remember the new one.

        Args:
            fact: The fact as it appears in your notes, or enough of its words to pick out one fact.
        """
        try:
            removed = await store.forget(fact)
        except MemoryStoreError as exc:
            raise ToolError(str(exc)) from exc
        return f"Forgot: {removed}"

    registry.register(remember)
    registry.register(forget)


def _check_fact(fact: str, mask: Masker) -> str:
    fact = fact.strip()
    if not fact:
        raise ToolError("The fact is empty. Send one short sentence to remember.")
    if "\n" in fact or "\r" in fact:
        raise ToolError("The fact must be a single line. Remember one fact per call, without newlines.")
    if len(fact) > MAX_FACT_CHARS:
        raise ToolError(f"The fact is {len(fact)} characters; the limit is {MAX_FACT_CHARS}. "
                        "Shorten it to the durable point, or split it into several facts.")
    if MARKUP.search(fact):
        raise ToolError("The fact contains model or tool markup (such as <|...|> tokens or tool tags). "
                        "Write it as a plain sentence.")
    if mask(fact) != fact:
        raise ToolError("A credential (an API key or token) was detected in the fact, "
                        "so it was not stored. Never store secrets in memory.")
    return fact
