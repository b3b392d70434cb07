"""Small commands around the configuration: ``init``, ``config`` and ``usage``."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from datetime import datetime
from pathlib import Path

import yaml

from agent.chat import load_from_args
from agent.config_file import default_config_path, load_config
from agent.errors import ConfigError
from agent.presets import PRESETS


def run_init(args: argparse.Namespace) -> int:
    path = Path(getattr(args, "config", None) or default_config_path()).expanduser()
    if path.exists():
        print(f"reverie: {path} already exists; not overwriting it. Edit it, or pass --config NEW_PATH.",
              file=sys.stderr)
        return 1
    ask = sys.stdin.isatty() and not args.yes
    provider = args.provider or (_ask("Provider", "anthropic", ", ".join(PRESETS)) if ask else "anthropic")
    if provider not in PRESETS:
        raise ConfigError(f"Unknown provider {provider!r}; expected one of: {', '.join(PRESETS)}.")
    preset = PRESETS[provider]
    llm: dict[str, object] = {"provider": provider}
    model = args.model or (_ask("Model", preset.default_model) if ask else preset.default_model)
    if model:
        llm["model"] = model
    base_url = args.base_url or preset.base_url
    if provider in ("openai_compatible", "vllm", "ollama"):
        base_url = args.base_url or (_ask("Base URL", base_url or "http://localhost:8000/v1") if ask else base_url)
        llm["base_url"] = base_url
    if preset.needs_key or args.api_key_env:
        llm["api_key"] = _key_entry(args, provider, ask)
    data: dict[str, object] = {"llm": llm}
    if args.workspace:
        data["workspace"] = args.workspace
    _write(path, data)
    print(f"Wrote {path}. Start chatting with: reverie chat")
    return 0


def _key_entry(args: argparse.Namespace, provider: str, ask: bool) -> str:
    """A ``${VAR}`` reference when the key lives in the environment, else the key itself."""
    env_name = args.api_key_env or PRESETS[provider].key_env or "API_KEY"
    if args.api_key_env or os.environ.get(env_name) or not ask:
        return f"${{{env_name}}}"
    key = getpass.getpass(f"API key (or leave empty to use ${env_name} from the environment): ").strip()
    return key or f"${{{env_name}}}"


def _ask(label: str, default: str, choices: str = "") -> str:
    hint = f" ({choices})" if choices else ""
    answer = input(f"{label}{hint} [{default}]: ").strip()
    return answer or default


def _write(path: Path, data: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    header = "# reverie configuration. Every key is documented in config.example.yaml.\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(header + yaml.safe_dump(data, sort_keys=False))


def run_config_check(args: argparse.Namespace) -> int:
    from agent.daemon import channel_models
    from agent.providers import build_provider, resolve

    config, path = load_from_args(args)
    build_provider(config.llm, None)  # the same checks `reverie chat` makes (keys, prices for the budget)
    resolved = resolve(config.llm)
    print(f"config:    {path or '(none; from the environment)'}")
    print(f"workspace: {config.workspace_path}")
    where = f" at {resolved.base_url}" if resolved.base_url else ""
    print(f"model:     {resolved.provider} / {resolved.model}{where}")
    for ref in config.llm.fallback:
        fb = resolve(config.llm, ref)
        print(f"fallback:  {fb.provider} / {fb.model}")
    print(f"channels:  {', '.join(c.label for c in config.channels) or 'none (terminal only)'}")
    for label, chain in channel_models(config, None).items():
        print(f"  {label}: {chain.name} / {chain.model}")
    print("OK")
    return 0


def run_usage(args: argparse.Namespace) -> int:
    from agent.usage import UsageLog

    config = load_config(getattr(args, "config", None), need_model=False)
    log = UsageLog(config.workspace_path / "usage.jsonl", config.llm)
    now = datetime.now()
    midnight = datetime(now.year, now.month, now.day).timestamp()
    month = datetime(now.year, now.month, 1).timestamp()
    for title, since in (("Today", midnight), ("This month", month)):
        totals = log.summary(since)
        print(f"{title}:")
        if not totals:
            print("  no model calls")
        for model, t in sorted(totals.items()):
            cost = "price unknown" if t.unpriced and not t.cost else f"${t.cost:.4f}"
            print(f"  {model}: {t.calls} calls, {t.usage.input:,} in, {t.usage.output:,} out, "
                  f"{t.usage.cache_read:,} cache read, {t.usage.cache_write:,} cache write, {cost}")
    return 0
