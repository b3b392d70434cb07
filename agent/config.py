"""The configuration schema: one Pydantic model, unknown keys rejected.

Load it with ``agent.config_file.load_config``; every key is documented in ``config.example.yaml``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from agent.presets import PRESETS

DEFAULT_WORKSPACE = "~/.reverie"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: Any) -> float:
    """Seconds from ``90``, ``"90s"``, ``"30m"``, ``"1h"`` or ``"2d"``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"expected a duration such as 90, '30m', '1h' or '2d', got {value!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Price(Strict):
    """US dollars per million tokens."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None


class ModelRef(Strict):
    """A model to use: by itself it inherits the provider, key and base_url of ``llm``."""

    provider: str | None = None
    model: str
    api_key: str | None = None
    base_url: str | None = None

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str | None) -> str | None:
        return value if value is None else check_provider(value)


def check_provider(value: str) -> str:
    if value not in PRESETS:
        raise ValueError(f"unknown provider {value!r}; expected one of: {', '.join(PRESETS)}")
    return value


class LLMConfig(Strict):
    provider: str = "anthropic"
    model: str | None = None
    api_key: str | None = None
    base_url: str | None = None
    max_tokens: int = Field(8192, gt=0)
    temperature: float | None = Field(None, ge=0, le=2)
    timeout: float = Field(120.0, gt=0)
    max_retries: int = Field(2, ge=0, le=10)
    stream_retries: int = Field(2, ge=0, le=10)
    fallback: list[ModelRef] = []
    daily_budget_usd: float | None = Field(None, ge=0)
    daily_token_budget: int | None = Field(None, ge=0)
    prices: dict[str, Price] = {}

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        return check_provider(value)

    @field_validator("fallback", mode="before")
    @classmethod
    def _names_to_refs(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"model": v} if isinstance(v, str) else v for v in value]
        return value


class AgentConfig(Strict):
    max_steps: int = Field(20, ge=1, le=500)
    context_tokens: int = Field(100_000, ge=2_000)
    max_concurrent_turns: int = Field(16, ge=1, le=1024)
    subagent_model: str | None = None
    max_subagents: int = Field(4, ge=1, le=64)  # children running at once
    subagent_max_steps: int = Field(15, ge=1, le=500)  # the most steps a child may take (spawn may ask fewer)
    turn_timeout: float = Field(600.0, gt=0)


class ExecConfig(Strict):
    enabled: bool = False
    timeout: float = Field(60.0, gt=0)
    max_output_chars: int = Field(10_000, ge=100)
    deny_patterns: list[str] = []
    env_allow: list[str] = []


class WebConfig(Strict):
    enabled: bool = True
    timeout: float = Field(15.0, gt=0)
    max_bytes: int = Field(2_000_000, ge=1_000)
    allow_private: bool = False


class ToolsConfig(Strict):
    restrict_to_workspace: bool = True
    max_result_chars: int = Field(16_000, ge=500)
    exec: ExecConfig = ExecConfig()
    web: WebConfig = WebConfig()


GroupPolicy = Literal["mention", "open", "deny"]
SessionScope = Literal["chat", "thread", "user"]


class ChannelBase(Strict):
    name: str | None = None  # defaults to the type; set it to run two bots of one platform
    allow_from: list[str] = []
    allow_chats: list[str] = []
    group_policy: GroupPolicy = "mention"
    session_scope: SessionScope = "chat"
    provider: str | None = None
    model: str | None = None

    @field_validator("allow_from", "allow_chats", mode="before")
    @classmethod
    def _ids_as_strings(cls, value: Any) -> Any:
        return [str(v) for v in value] if isinstance(value, list) else value

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str | None) -> str | None:
        return value if value is None else check_provider(value)

    @property
    def label(self) -> str:
        return self.name or str(getattr(self, "type", "channel"))


class TelegramChannel(ChannelBase):
    type: Literal["telegram"]
    token: str
    base_url: str | None = None  # a self-hosted Bot API server, e.g. http://127.0.0.1:8081/bot


class DiscordChannel(ChannelBase):
    type: Literal["discord"]
    token: str
    api_url: str | None = None  # a proxy or stand-in for Discord's REST API, e.g. http://127.0.0.1:8080/api/v10
    gateway_url: str | None = None  # and for its gateway, e.g. ws://127.0.0.1:8080/gateway


class SlackChannel(ChannelBase):
    type: Literal["slack"]
    bot_token: str
    app_token: str | None = None
    signing_secret: str | None = None
    mode: Literal["socket", "http"] = "socket"
    host: str = "127.0.0.1"
    port: int = Field(3000, ge=0, le=65535)
    base_url: str | None = None


Channel = Annotated[TelegramChannel | DiscordChannel | SlackChannel, Field(discriminator="type")]


class OwnerConfig(Strict):
    telegram: list[str] = []
    discord: list[str] = []
    slack: list[str] = []
    alert_after_minutes: float = Field(10, ge=0)

    @field_validator("telegram", "discord", "slack", mode="before")
    @classmethod
    def _ids_as_strings(cls, value: Any) -> Any:
        if isinstance(value, str | int):
            value = [value]
        return [str(v) for v in value] if isinstance(value, list) else value


class DreamConfig(Strict):
    enabled: bool = True
    interval_minutes: float = Field(60, gt=0)
    max_facts: int = Field(200, ge=1)
    model: str | None = None


class MemoryConfig(Strict):
    dream: DreamConfig = DreamConfig()
    max_prompt_chars: int = Field(20_000, ge=500)


class MCPServer(Strict):
    name: str = Field(min_length=1)
    enabled: bool = True
    transport: Literal["stdio", "http", "sse"] = "stdio"
    command: str | None = None
    args: list[str] = []
    env: dict[str, str] = {}
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = {}
    timeout: float = Field(30.0, gt=0)
    enabled_tools: list[str] | None = None
    disabled_tools: list[str] = []

    @model_validator(mode="after")
    def _transport_fields(self) -> MCPServer:
        if self.transport == "stdio" and not self.command:
            raise ValueError("a stdio server needs 'command' (and usually 'args')")
        if self.transport != "stdio" and not self.url:
            raise ValueError(f"an {self.transport} server needs 'url'")
        return self

    def secrets(self) -> set[str]:
        """Its env and header values ("Bearer KEY" also gives KEY) and its URL's user, password and query values."""
        found = {*self.env.values(), *self.headers.values()}
        for header in self.headers.values():
            found.update(header.split())
        if self.url:
            url = urlsplit(self.url)
            found.update(part for part in (url.username, url.password) if part)
            found.update(unquote(part) for part in (url.username, url.password) if part)
            found.update(value for _, value in parse_qsl(url.query))
        return {s for s in found if s and len(s) >= 6 and s.lower() not in _NOT_SECRET}


class DeliverTo(Strict):
    channel: str
    chat: str
    thread: str | None = None  # a forum topic or thread inside the chat
    # The conversation of the person who asked for the job, where it is not the chat's (session_scope: user)
    session: str | None = None

    @property
    def session_key(self) -> str:
        """The chat's own conversation (as ``Inbound.session_key`` names it)."""
        return f"{self.channel}:{self.chat}" + (f":{self.thread}" if self.thread else "")

    @property
    def place(self) -> tuple[str, str, str | None]:
        """Where it is delivered: the same chat, whoever asked."""
        return self.channel, self.chat, self.thread

    @field_validator("chat", mode="before")
    @classmethod
    def _id_as_string(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value


MIN_EVERY, MAX_EVERY = 1.0, 315_360_000.0  # a cron job's `every`: one second to ten years


class CronJob(Strict):
    name: str = Field(min_length=1)
    message: str = Field(min_length=1)
    schedule: str | None = None
    every: float | None = None  # seconds, MIN_EVERY to MAX_EVERY
    at: str | None = None
    timezone: str | None = None
    deliver_to: DeliverTo | None = None
    model: str | None = None
    enabled: bool = True

    @field_validator("every")
    @classmethod
    def _every_bounded(cls, value: float | None) -> float | None:
        if value is not None and not MIN_EVERY <= value <= MAX_EVERY:  # also refuses nan and inf
            raise ValueError(f"every must be a number of seconds from {MIN_EVERY:.0f} to {MAX_EVERY:.0f} (10 years)")
        return value

    @model_validator(mode="after")
    def _one_trigger(self) -> CronJob:
        given = [k for k in ("schedule", "every", "at") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'schedule' (crontab), 'every' (seconds) or 'at' (ISO time)")
        return self


class CronConfig(Strict):
    enabled: bool = True
    catch_up_window: float = 3600.0

    @field_validator("catch_up_window", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


class SessionsConfig(Strict):
    archive_after_days: float = Field(30, ge=0)
    memory_mb: float = Field(4, ge=0)  # conversations kept loaded between turns (an estimate)


class LoggingConfig(Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    max_bytes: int = Field(5_000_000, ge=10_000)
    backups: int = Field(3, ge=0)


class Config(Strict):
    workspace: str = DEFAULT_WORKSPACE
    llm: LLMConfig = LLMConfig()
    agent: AgentConfig = AgentConfig()
    tools: ToolsConfig = ToolsConfig()
    channels: list[Channel] = []
    owner: OwnerConfig = OwnerConfig()
    memory: MemoryConfig = MemoryConfig()
    mcp_servers: list[MCPServer] = []
    cron_jobs: list[CronJob] = []
    cron: CronConfig = CronConfig()
    sessions: SessionsConfig = SessionsConfig()
    logging: LoggingConfig = LoggingConfig()

    @model_validator(mode="after")
    def _channel_names(self) -> Config:
        labels = [ch.label for ch in self.channels]
        for label in labels:
            if label in ("subagent", "terminal"):
                raise ValueError(f"a channel may not be named {label!r}: reverie uses that name itself")
            if labels.count(label) > 1:
                raise ValueError(f"two channels are named {label!r}; give each one its own name (e.g. name: "
                                 f"{label}-2)")
        return self

    @field_validator("cron_jobs")
    @classmethod
    def _cron_jobs(cls, jobs: list[CronJob], info: ValidationInfo) -> list[CronJob]:
        """Each job's schedule, time zone and channel, and unique names: refused at load, not at run time."""
        if not jobs:
            return jobs  # apscheduler is imported only for configs that have jobs
        from datetime import datetime

        from agent.cron.expr import trigger_for
        from agent.errors import ReverieError

        names = [job.name for job in jobs]
        twice = next((n for n in names if names.count(n) > 1), None)
        if twice is not None:
            raise ValueError(f"two cron_jobs are named {twice!r}; give each job its own name")
        labels = [ch.label for ch in info.data.get("channels", [])]
        now = datetime.now().astimezone()
        for job in jobs:
            try:
                trigger_for(job, now)
            except ReverieError as exc:
                raise ValueError(str(exc).rstrip(".")) from None
            if labels and job.deliver_to is not None and job.deliver_to.channel not in labels:
                raise ValueError(f"Cron job {job.name!r}: deliver_to.channel {job.deliver_to.channel!r} is not a "
                                 f"configured channel; use one of: {', '.join(labels)}")
        return jobs

    @model_validator(mode="after")
    def _unique_mcp_names(self) -> Config:
        names = [s.name for s in self.mcp_servers]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"two mcp_servers are named {twice[0]!r}; give each server its own name")
        return self

    @property
    def workspace_path(self) -> Path:
        return Path(self.workspace).expanduser().resolve()

    def secrets(self) -> set[str]:
        """Every credential the configuration holds, for masking in logs and errors."""
        found = {self.llm.api_key, *(f.api_key for f in self.llm.fallback)}
        for ch in self.channels:
            found.update(getattr(ch, k, None) for k in ("token", "bot_token", "app_token", "signing_secret"))
        for server in self.mcp_servers:
            found.update(server.secrets())
        return {s for s in found if s and len(s) >= 6 and s.lower() not in _NOT_SECRET}


_NOT_SECRET = {"bearer", "none", "not-needed", "ollama"}
