"""The composition root: builds every part from the configuration and wires them to the bus.

    runtime = build_runtime(config, config_path)     # raises ConfigError before anything starts
    async with runtime.running():                     # the agent service consumes the bus
        ...                                           # channels publish Inbound, read Outbound
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from agent.bus import SUBAGENT, Inbound, MessageBus, Outbound
from agent.compaction import Compactor
from agent.config import Config, DiscordChannel, SlackChannel, TelegramChannel
from agent.context import SystemPrompt, TokenCounter
from agent.delivery import Delivery
from agent.errors import ChannelError, ConfigError
from agent.gateway import Gateway
from agent.journal import Journal
from agent.logs import Masker, env_secrets
from agent.providers import ModelChain, build_provider
from agent.service import AgentService, Profile, usage_text
from agent.subagents import Subagents
from agent.supervisor import Supervisor
from agent.tools.registry import ToolContext, ToolRegistry, builtin_registry
from agent.usage import UsageLog
from channels.access import Access, PairingStore
from channels.base import Channel, ChannelContext, DeliveryError
from channels.dedupe import SeenStore
from memory import MemoryStore
from memory.dream import Dream
from memory.setup import archiver, attach, build_dream
from sessions import SessionStore
from skills import SkillLibrary

if TYPE_CHECKING:
    from agent.cron.service import CronService
    from agent.mcp import MCPManager

ChannelConfig = TelegramChannel | DiscordChannel | SlackChannel

WORKSPACE_DIRS = ("sessions", "memory", "skills", "cron", "logs", "inbox", "state")


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
    tools: ToolRegistry
    subagents: Subagents
    memory: MemoryStore
    mcp: MCPManager | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @contextlib.asynccontextmanager
    async def running(self, drain_timeout: float = 30.0) -> AsyncIterator[Runtime]:
        """MCP servers up (in parallel), the agent service consuming the bus; all stopped on exit."""
        if self.mcp is not None:
            await self.mcp.start(self.tools)
        tasks = [asyncio.create_task(self.service.run(), name="agent service"),
                 asyncio.create_task(self.subagents.run(), name="subagent reports")]
        try:
            yield self
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            try:
                await self.service.drain(drain_timeout)
            finally:
                if self.mcp is not None:
                    await self.mcp.aclose()


def build_runtime(config: Config, config_path: Path | None = None, *, model: str | None = None,
                  provider: str | None = None) -> Runtime:
    """Everything, wired; ``model``/``provider`` replace the primary model (``reverie chat --model``)."""
    workspace = config.workspace_path
    usage = UsageLog(workspace / "usage.jsonl", config.llm)
    default = build_provider(config.llm, usage, model=model, provider=provider, where="--model/--provider")
    by_channel = channel_models(config, usage)
    prepare_workspace(workspace)

    child_model = (build_provider(config.llm, usage, model=config.agent.subagent_model, where="agent.subagent_model")
                   if config.agent.subagent_model else None)
    protected = tuple(p for p in [config_path.resolve() if config_path else None] if p is not None)
    tools = builtin_registry(config.tools)
    skills = SkillLibrary(workspace / "skills")
    skills.register(tools)
    memory = attach(config, tools)
    job_model = cron_tool(config, config_path, tools, usage)

    def extra() -> str:  # memory last: it changes more often than the skills, so more of the prefix stays cached
        parts = (skills.prompt_text(), memory.prompt_text(config.memory.max_prompt_chars))
        return "\n\n".join(part for part in parts if part)

    prompt = SystemPrompt(workspace, extra=extra)
    bus = MessageBus()
    children = Subagents(bus, bus.publish_inbound, workspace, cap=config.agent.max_subagents,
                         max_steps=config.agent.subagent_max_steps)
    children.register(tools)

    def profiles(msg: Inbound) -> Profile:
        model = (job_model(msg.scope) if msg.scheduled and msg.scope else None) or by_channel.get(msg.channel, default)
        main = Profile(model, tools, prompt.system, config.agent.max_steps)
        return children.profile(msg, main, child_model) if msg.channel == SUBAGENT else main

    sessions = SessionStore(workspace / "sessions", mask=Masker(config.secrets() | env_secrets()),
                            memory=int(config.sessions.memory_mb * 1_000_000))
    compactor = Compactor(config.agent.context_tokens, TokenCounter())
    service = AgentService(bus, sessions, profiles, ToolContext(workspace, config.tools, protected), usage,
                           config.agent, compactor, config.llm.max_tokens)
    service.on_stop, children.cancel = children.stop, service.cancel
    return Runtime(config, workspace, bus, sessions, usage, service, default, tools, children, memory,
                   mcp_manager(config))


def cron_tool(config: Config, config_path: Path | None, tools: ToolRegistry,
              usage: UsageLog) -> Callable[[str], ModelChain | None]:
    """The ``cron`` tool (jobs go to ``<workspace>/cron/jobs.yaml``; the daemon runs them), and the model
    of a job's turn: its ``model`` if it sets one (session ``cron:<name>``)."""
    from agent.cron.jobs import JobStore
    from agent.cron.tool import register

    store = JobStore(config.workspace_path, config.cron_jobs, config_path)
    register(store, tools, config)
    chains: dict[str, ModelChain] = {}

    def job_model(scope: str) -> ModelChain | None:
        job = store.load().get(scope.removeprefix("cron:")) if scope.startswith("cron:") else None
        if job is None or not job.spec.model:
            return None
        if job.spec.model not in chains:
            chains[job.spec.model] = build_provider(config.llm, usage, model=job.spec.model,
                                                    where=f"cron job {job.spec.name}")
        return chains[job.spec.model]

    return job_model


def mcp_manager(config: Config) -> MCPManager | None:
    """The MCP client, only when a server is configured (the SDK is imported only then)."""
    if not any(server.enabled for server in config.mcp_servers):
        return None
    from agent.mcp import MCPManager

    return MCPManager(config.mcp_servers, config.workspace_path)


def channel_models(config: Config, usage: UsageLog | None) -> dict[str, ModelChain]:
    """Channels that set their own provider or model get their own chain (fallbacks included)."""
    return {ch.label: build_provider(config.llm, usage, model=ch.model, provider=ch.provider, where=f"channels[{i}]")
            for i, ch in enumerate(config.channels) if ch.model or ch.provider}


@dataclass
class Daemon:
    runtime: Runtime
    journal: Journal
    gateway: Gateway
    delivery: Delivery
    supervisor: Supervisor
    channels: dict[str, Channel]
    dream: Dream | None = None  # None when memory.dream.enabled is false
    cron: CronService | None = None  # None when cron.enabled is false


def build_daemon(config: Config, config_path: Path | None = None) -> Daemon:
    """The runtime plus every configured chat platform, the gateway in front and delivery behind."""
    if not config.channels:
        raise ConfigError("No channels to serve. Add a channels: entry (telegram, discord or slack; see "
                          "config.example.yaml), or talk in the terminal with `reverie chat`.")
    state = config.workspace_path / "state"
    runtime = build_runtime(config, config_path)
    state.mkdir(exist_ok=True, mode=0o700)
    journal = Journal(state / "journal.jsonl", mask=Masker(config.secrets() | env_secrets()))
    pairing = PairingStore(config.workspace_path / "pairing")
    channels: dict[str, Channel] = {}
    holder: list[Supervisor] = []
    gateway = Gateway(runtime.bus, journal, SeenStore(state / "seen.jsonl"), pairing,
                      lambda: status_text(holder[0], runtime))
    runtime.subagents.publish = gateway.publish  # a child's report is journaled like a user message
    runtime.subagents.state = state / "subagents.json"
    for index, cfg in enumerate(config.channels):
        owners = getattr(config.owner, cfg.type)
        access = Access(cfg.label, cfg, owners, pairing)
        ctx = ChannelContext(cfg.label, gateway.publish, access, runtime.workspace / "inbox")
        channels[cfg.label] = make_adapter(cfg, ctx, index)
    kinds: dict[str, str] = {cfg.label: cfg.type for cfg in config.channels}
    supervisor = Supervisor(channels, kinds, config.owner, runtime.bus, state / "status.json",
                            lambda: {"active_turns": runtime.service.active, "mcp": mcp_states(runtime)})
    holder.append(supervisor)
    dream = None
    if config.memory.dream.enabled:
        dream = build_dream(config, runtime.memory, runtime.default_model, runtime.usage, pairing)
        dream.after = archiver(config, runtime.sessions)
    delivery = Delivery(journal, channels)
    cron = None
    if config.cron.enabled:
        from agent.cron.service import CronService

        cron = CronService(config, gateway.publish, runtime.service, runtime.usage, config_path=config_path)
        delivery.observers.append(cron.observe)
    return Daemon(runtime, journal, gateway, delivery, supervisor, channels, dream, cron)


def make_adapter(cfg: ChannelConfig, ctx: ChannelContext, index: int) -> Channel:
    """The platform's adapter; a missing SDK breaks only this channel (it reports why, and is retried)."""
    try:
        if cfg.type == "telegram":
            from channels.telegram import TelegramAdapter

            return TelegramAdapter(cfg, ctx)
        if cfg.type == "discord":
            from channels.discord import DiscordAdapter

            return DiscordAdapter(cfg, ctx)
        from channels.slack import SlackAdapter

        return SlackAdapter(cfg, ctx)
    except ImportError as exc:
        return Unavailable(cfg.label, ctx, f"channels[{index}] ({cfg.type}) cannot load its library: {exc}")


class Unavailable:
    """Stands in for a channel whose SDK cannot be imported."""

    def __init__(self, name: str, ctx: ChannelContext, reason: str) -> None:
        self.name, self.state, self.reason = name, ctx.state, reason

    async def start(self) -> None:
        raise ChannelError(self.reason)

    async def stop(self) -> None:
        return None

    async def send(self, out: Outbound) -> str | None:
        raise DeliveryError(self.reason, retryable=False)


def mcp_states(runtime: Runtime) -> dict[str, dict[str, object]]:
    """Each MCP server's state, for `reverie status` and /status."""
    if runtime.mcp is None:
        return {}
    return {s.name: {"state": s.state, "error": s.error, "tools": len(s.tools)} for s in runtime.mcp.states()}


def status_text(supervisor: Supervisor, runtime: Runtime) -> str:
    lines = [f"Up since {datetime.fromtimestamp(supervisor.started_at):%Y-%m-%d %H:%M}; "
             f"{runtime.service.active} turns running."]
    for label, channel in supervisor.channels.items():
        state = channel.state
        lines.append(f"{label}: {'connected' if state.connected else 'down'}"
                     + (f" (last error: {state.last_error})" if state.last_error and not state.connected else ""))
    for name, mcp in mcp_states(runtime).items():
        lines.append(f"MCP {name}: {mcp['state']}, {mcp['tools']} tools"
                     + (f" (last error: {mcp['error']})" if mcp["error"] and mcp["state"] != "up" else ""))
    lines.append(usage_text(runtime.usage))
    return "\n".join(lines)
