"""The composition root: builds every part from the configuration and wires them to the bus.

    runtime = build_runtime(config, config_path)     # raises ConfigError before anything starts
    async with runtime.running():                     # the agent service consumes the bus
        ...                                           # channels publish Inbound, read Outbound
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from agent.bus import Inbound, MessageBus
from agent.compaction import Compactor
from agent.config import Config
from agent.context import SystemPrompt, TokenCounter
from agent.errors import ConfigError
from agent.loop import Model
from agent.providers import ModelChain, build_provider
from agent.service import AgentService
from agent.tools.registry import ToolContext, builtin_registry
from agent.usage import UsageLog
from sessions import SessionStore

WORKSPACE_DIRS = ("sessions", "memory", "skills", "cron", "logs", "inbox")


def prepare_workspace(workspace: Path) -> None:
    """Create the workspace folders, readable by the owner only."""
    try:
        workspace.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name in WORKSPACE_DIRS:
            (workspace / name).mkdir(exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(f"Cannot use {workspace} as the workspace: {exc.strerror or exc}. Set workspace: "
                          "in the config (or REVERIE_WORKSPACE) to a folder you can write.") from exc


@dataclass
class Runtime:
    config: Config
    workspace: Path
    bus: MessageBus
    sessions: SessionStore
    usage: UsageLog
    service: AgentService
    default_model: ModelChain
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @contextlib.asynccontextmanager
    async def running(self, drain_timeout: float = 30.0) -> AsyncIterator[Runtime]:
        task = asyncio.create_task(self.service.run(), name="agent service")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self.service.drain(drain_timeout)


def build_runtime(config: Config, config_path: Path | None = None, *, model: str | None = None,
                  provider: str | None = None) -> Runtime:
    """Everything, wired; ``model``/``provider`` replace the primary model (``reverie chat --model``)."""
    workspace = config.workspace_path
    usage = UsageLog(workspace / "usage.jsonl", config.llm)
    default = build_provider(config.llm, usage, model=model, provider=provider, where="--model/--provider")
    by_channel = channel_models(config, usage)
    prepare_workspace(workspace)

    def models(msg: Inbound) -> Model:
        return by_channel.get(msg.channel, default)

    protected = tuple(p for p in [config_path.resolve() if config_path else None] if p is not None)
    tools = builtin_registry(config.tools)
    ctx = ToolContext(workspace, config.tools, protected)
    bus = MessageBus()
    sessions = SessionStore(workspace / "sessions")
    compactor = Compactor(config.agent.context_tokens, TokenCounter())
    service = AgentService(bus, sessions, tools, ctx, SystemPrompt(workspace), models, usage, config.agent,
                           compactor, config.llm.max_tokens)
    return Runtime(config, workspace, bus, sessions, usage, service, default)


def channel_models(config: Config, usage: UsageLog | None) -> dict[str, ModelChain]:
    """Channels that set their own provider or model get their own chain (fallbacks included)."""
    return {ch.label: build_provider(config.llm, usage, model=ch.model, provider=ch.provider, where=f"channels[{i}]")
            for i, ch in enumerate(config.channels) if ch.model or ch.provider}
