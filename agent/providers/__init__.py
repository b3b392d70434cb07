"""Model providers: the configured primary plus fallbacks, behind one ``Provider``.

    provider = build_provider(config.llm, usage_log)            # a ModelChain
    completion = await provider.complete(request, on_text)

Others may import: ``build_provider``, ``resolve``, ``ModelChain``, ``Resolved``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

from agent.config import LLMConfig, ModelRef
from agent.errors import BudgetExceeded, ConfigError, ContextOverflow, ProviderError
from agent.presets import PRESETS
from agent.types import Completion, Provider, Request, TextSink
from agent.usage import UsageLog, price_for

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resolved:
    provider: str
    api: str
    model: str
    api_key: str | None
    base_url: str | None


def resolve(llm: LLMConfig, ref: ModelRef | None = None, env: Mapping[str, str] | None = None,
            where: str | None = None) -> Resolved:
    """Fill in what the config leaves out from the provider's preset and the environment.

    ``llm``'s key and base_url are used only for ``llm``'s own provider, never sent to another one.
    """
    env = os.environ if env is None else env
    name = (ref.provider if ref and ref.provider else None) or llm.provider
    same = name == llm.provider
    preset = PRESETS[name]
    model = (ref.model if ref else None) or (llm.model if same else None) or preset.default_model
    where = where or ("llm.fallback" if ref else "llm")
    if not model:
        raise ConfigError(f"No model set for provider {name!r}. Set {where}.model (e.g. the model name your "
                          "server serves).")
    base_url = (ref.base_url if ref else None) or (llm.base_url if same else None) or preset.base_url
    if name == "openai_compatible" and not base_url:
        raise ConfigError("provider openai_compatible needs a base_url. Set llm.base_url, "
                          "e.g. http://localhost:8000/v1.")
    key = (ref.api_key if ref else None) or (llm.api_key if same else None)
    key = key or (env.get(preset.key_env) if preset.key_env else None)
    if preset.needs_key and not key:
        raise ConfigError(f"No API key for provider {name!r}. Set {preset.key_env} in the environment or "
                          f"{where}.api_key in the config, or run `reverie init`.")
    if key and key.upper().startswith("YOUR_"):
        raise ConfigError(f"{where}.api_key still holds the placeholder {key[:5]}... from the example. "
                          f"Put your real key there, or write api_key: ${{{preset.key_env}}}.")
    return Resolved(name, preset.api, model, key, base_url)


def make_one(res: Resolved, llm: LLMConfig) -> Provider:
    common = {"timeout": llm.timeout, "max_retries": llm.max_retries, "temperature": llm.temperature}
    if res.api == "anthropic":
        from agent.providers.anthropic import AnthropicProvider

        return AnthropicProvider(res.model, res.api_key or "", res.base_url, **common)  # type: ignore[arg-type]
    from agent.providers.openai_compat import OpenAICompatProvider

    return OpenAICompatProvider(res.model, res.api_key, res.base_url, name=res.provider, **common)  # type: ignore[arg-type]


def build_provider(llm: LLMConfig, usage: UsageLog | None, *, model: str | None = None,
                   provider: str | None = None, where: str = "llm") -> ModelChain:
    """The chain for ``llm``, optionally with another primary model or provider (a channel's, or --model)."""
    primary = None
    if model or provider:
        if provider is not None and provider not in PRESETS:
            raise ConfigError(f"{where}: unknown provider {provider!r}; expected one of: {', '.join(PRESETS)}.")
        default = PRESETS[provider or llm.provider].default_model
        primary = ModelRef(provider=provider, model=model or default or llm.model or "")
    chain = [resolve(llm, primary, where=where), *(resolve(llm, ref) for ref in llm.fallback)]
    if llm.daily_budget_usd is not None:
        for res in chain:
            if price_for(res.model, llm.prices) is None:
                raise ConfigError(f"llm.daily_budget_usd is set, but the price of {res.model!r} is unknown, so "
                                  f"the budget could not be enforced. Add llm.prices.{res.model}: "
                                  "{input: ..., output: ...} (USD per million tokens), or use llm.daily_token_budget.")
    return ModelChain([make_one(r, llm) for r in chain], usage, stream_retries=llm.stream_retries)


class ModelChain:
    """Tries each provider in order. Retries a stream that broke before anything was shown.

    Never retries or falls back once text reached the user: that is how duplicate answers happen.
    """

    def __init__(self, providers: list[Provider], usage: UsageLog | None, *, stream_retries: int = 2,
                 backoff: float = 0.5) -> None:
        self.providers = providers
        self.usage = usage
        self.stream_retries = stream_retries
        self.backoff = backoff
        self.name = providers[0].name
        self.model = providers[0].model

    async def complete(self, request: Request, on_text: TextSink | None = None, *,
                       session: str = "") -> Completion:
        last: ProviderError | None = None
        for index, provider in enumerate(self.providers):
            if index:
                logger.warning("falling back to %s/%s after: %s", provider.name, provider.model, last)
            try:
                return await self._attempts(provider, request, on_text, session)
            except (ContextOverflow, BudgetExceeded):
                raise
            except ProviderError as exc:
                if exc.shown:
                    raise
                last = exc
        assert last is not None
        raise last

    async def _attempts(self, provider: Provider, request: Request, on_text: TextSink | None,
                        session: str) -> Completion:
        for attempt in range(self.stream_retries + 1):
            if self.usage is not None:
                self.usage.check_budget()
            try:
                completion = await provider.complete(request, on_text)
            except ProviderError as exc:
                if exc.shown or not exc.retryable or attempt == self.stream_retries:
                    raise
                logger.warning("retrying %s/%s (attempt %d): %s", provider.name, provider.model,
                               attempt + 2, exc)
                await asyncio.sleep(self.backoff * 2**attempt)
                continue
            if self.usage is not None:  # under the configured name: that is where llm.prices looks
                self.usage.record(provider.model, provider.name, completion.usage, session, completion.model)
            return completion
        raise AssertionError("unreachable")
