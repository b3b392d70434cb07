"""Memory from the configuration: the store, the ``remember`` tool, the prompt notes and Dream.

    store = attach(config, tools)                       # MemoryStore; remember registered
    notes = lambda: store.prompt_text(config.memory.max_prompt_chars)
    dream = build_dream(config, store, default_model, usage, PairingStore(workspace / "pairing"))
    dream.after = archiver(config, sessions)            # old, fully read sessions move to sessions/archive/
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from agent.config import Config
from agent.logs import Masker, env_secrets
from agent.providers import ModelChain, build_provider
from agent.tools.registry import ToolRegistry
from agent.usage import UsageLog
from channels.access import PairingStore
from memory import tool
from memory.cursors import is_consolidated, load_state
from memory.dream import Dream, DreamResult
from memory.store import MemoryStore
from memory.transcript import Allowed
from sessions import SessionStore
from sessions.archive import archive_sessions, archived_key

logger = logging.getLogger(__name__)


def attach(config: Config, tools: ToolRegistry) -> MemoryStore:
    """The workspace's memory store, with ``remember`` added to ``tools``."""
    store = MemoryStore(config.workspace_path / "memory")
    tool.register(store, tools, secrets=config.secrets() | env_secrets())
    return store


def build_dream(config: Config, store: MemoryStore, default: ModelChain, usage: UsageLog | None,
                pairing: PairingStore) -> Dream:
    """Dream with ``memory.dream.model`` (or the default model), learning only from allowed senders."""
    settings = config.memory.dream
    model = (build_provider(config.llm, usage, model=settings.model, where="memory.dream.model")
             if settings.model else default)
    workspace = config.workspace_path
    return Dream(store, workspace / "sessions", workspace / "state" / "dream.json", model,
                 max_facts=settings.max_facts, context_tokens=config.agent.context_tokens,
                 max_tokens=config.llm.max_tokens, allowed=senders(config, pairing),
                 redact=Masker(config.secrets() | env_secrets()))


def senders(config: Config, pairing: PairingStore) -> Allowed:
    """Who Dream may learn from: the owner, a channel's ``allow_from``, approved pairings, the terminal.

    Anyone else who wrote in a session (another member of a group chat) is a stranger to memory.
    """
    channels = {ch.label: ch for ch in config.channels}

    def allowed(channel: str, sender: str | None) -> str | None:
        if channel == "terminal":
            return "owner"
        cfg = channels.get(channel)
        if cfg is None or not sender:
            return None
        if sender in getattr(config.owner, cfg.type):
            return "owner"
        if sender in cfg.allow_from or pairing.is_approved(channel, sender):
            return f"user {sender}"
        return None

    return allowed


def archiver(config: Config, sessions: SessionStore) -> Callable[[DreamResult], Awaitable[None]]:
    """After each run: gzip sessions idle for ``sessions.archive_after_days`` that Dream has fully read."""
    days = config.sessions.archive_after_days
    state_path = config.workspace_path / "state" / "dream.json"

    def archive() -> list[str]:
        state = load_state(state_path)
        done = archive_sessions(sessions.root, days, lambda path: is_consolidated(path, state))
        keys = [key for key in map(archived_key, done) if key]
        for key in keys:
            sessions.forget(key)  # a chat that comes back starts from the (now empty) live file
        return keys

    async def after(result: DreamResult) -> None:
        if days > 0 and result.outcome in ("committed", "unchanged", "nothing"):
            keys = await asyncio.to_thread(archive)
            if keys:
                logger.info("archived %d idle sessions to %s: %s", len(keys), sessions.root / "archive",
                            ", ".join(keys[:10]) + (" ..." if len(keys) > 10 else ""))

    return after
