"""Configuration: the shapes users copy must load; every mistake gets a message that says what to fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.config_file import load_config
from agent.errors import ConfigError
from agent.providers import resolve

ROOT = Path(__file__).resolve().parents[2]

NANOBOT_GUIDE_BLOCK = """\
llm:
  provider: anthropic
  model: claude-sonnet-4-6
  api_key: YOUR_ANTHROPIC_KEY
channels:
  - type: telegram
    token: YOUR_TELEGRAM_BOT_TOKEN
memory:
  dream:
    enabled: true
    interval_minutes: 60
    max_facts: 200
mcp_servers:
  - name: filesystem
    transport: stdio
    command: npx
    args: ["-y", "@modelcontextprotocol/server-filesystem", "./notes"]
  - name: brave-search
    transport: http
    url: https://your-mcp-server.example.com
    headers:
      Authorization: "Bearer YOUR_KEY"
cron_jobs:
  - name: daily_digest
    schedule: "0 18 * * *"
    message: "Prepare and send daily digest to team Telegram"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env=env or {})
    return str(info.value)


def test_the_block_from_the_nanobot_guide_loads_as_it_is(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, NANOBOT_GUIDE_BLOCK), env={})
    assert config.llm.model == "claude-sonnet-4-6"
    assert config.channels[0].type == "telegram"
    assert config.memory.dream.max_facts == 200
    assert [s.name for s in config.mcp_servers] == ["filesystem", "brave-search"]
    assert config.cron_jobs[0].schedule == "0 18 * * *"
    assert "YOUR_KEY" in config.secrets() or "Bearer YOUR_KEY" in config.secrets()


def test_openai_compatible_inline_form_loads(tmp_path: Path) -> None:
    text = "llm: {provider: openai_compatible, base_url: http://localhost:8000/v1, model: llama-4-scout, api_key: none}"
    config = load_config(write(tmp_path, text), env={})
    res = resolve(config.llm, env={})
    assert (res.api, res.model, res.base_url, res.api_key) == ("openai", "llama-4-scout",
                                                              "http://localhost:8000/v1", "none")


def test_config_example_loads_and_documents_every_top_level_key() -> None:
    config = load_config(ROOT / "config.example.yaml", env={})
    text = (ROOT / "config.example.yaml").read_text()
    for key in type(config).model_fields:
        assert f"\n{key}:" in text, f"config.example.yaml does not document {key}"
    assert config.llm.fallback[0].model == "claude-haiku-4-5"


def test_unknown_key_names_file_path_and_suggests(tmp_path: Path) -> None:
    message = error_of(tmp_path, "channels:\n  - type: telegram\n    tokn: abc\n")
    assert str(tmp_path / "config.yaml") in message
    assert "channels[0].tokn: unknown key. Did you mean 'token'?" in message
    assert "channels[0].token: required key is missing" in message


def test_wrong_value_says_what_was_expected(tmp_path: Path) -> None:
    message = error_of(tmp_path, "llm:\n  max_tokens: -5\n")
    assert "llm.max_tokens: Input should be greater than 0 (got -5)" in message


def test_unknown_provider_lists_the_known_ones(tmp_path: Path) -> None:
    message = error_of(tmp_path, "llm:\n  provider: antropic\n")
    assert "llm.provider: unknown provider 'antropic'; expected one of: anthropic, openai" in message


def test_unknown_channel_type(tmp_path: Path) -> None:
    message = error_of(tmp_path, "channels:\n  - type: irc\n    token: x\n")
    assert "'type' must be one of telegram, discord, slack" in message


def test_env_expansion_with_default_and_missing(tmp_path: Path) -> None:
    text = "llm:\n  api_key: ${MY_KEY}\n  model: ${MODEL:-claude-haiku-4-5}\n"
    config = load_config(write(tmp_path, text), env={"MY_KEY": "sk-from-env"})
    assert (config.llm.api_key, config.llm.model) == ("sk-from-env", "claude-haiku-4-5")
    message = error_of(tmp_path, text)
    assert "llm.api_key: environment variable MY_KEY is not set" in message


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, "llm:\n  provider: anthropic\n   model: x\n")
    assert "line 3" in message and "invalid YAML" in message


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    assert "expected a mapping" in error_of(tmp_path, "- a\n- b\n")


def test_empty_file_is_all_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, ""), env={}).agent.max_steps == 20


def test_no_file_uses_the_environment(tmp_path: Path) -> None:
    env = {"REVERIE_CONFIG": "", "HOME": str(tmp_path), "OPENAI_API_KEY": "sk-test-123456"}
    config = load_config(None, env=env)
    assert config.llm.provider == "openai"
    assert resolve(config.llm, env=env).api_key == "sk-test-123456"


def test_no_file_and_no_key_explains_how_to_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ConfigError) as info:
        load_config(None, env={})
    assert "ANTHROPIC_API_KEY" in str(info.value) and "reverie init" in str(info.value)


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml", env={})


def test_placeholder_key_is_caught_before_any_call(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, NANOBOT_GUIDE_BLOCK), env={})
    with pytest.raises(ConfigError, match="placeholder"):
        resolve(config.llm, env={})


def test_missing_key_names_the_variable(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "llm:\n  provider: deepseek\n"), env={})
    with pytest.raises(ConfigError, match="DEEPSEEK_API_KEY"):
        resolve(config.llm, env={})


def test_openai_compatible_needs_base_url(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "llm:\n  provider: openai_compatible\n  model: m\n"), env={})
    with pytest.raises(ConfigError, match="base_url"):
        resolve(config.llm, env={})


def test_cron_job_needs_exactly_one_trigger(tmp_path: Path) -> None:
    message = error_of(tmp_path, "cron_jobs:\n  - name: a\n    message: hi\n    every: 60\n    at: '2026-01-01T09:00'\n")
    assert "cron_jobs[0]: give exactly one of 'schedule'" in message


def test_a_bad_cron_job_is_refused_at_load(tmp_path: Path) -> None:
    message = error_of(tmp_path, "cron_jobs: [{name: j, schedule: '0 9 * * 8', message: x}]\n")
    assert "cron_jobs: Cron job 'j': Cron expression '0 9 * * 8': day-of-week 8 is out of range" in message
    assert ".." not in message
    assert "Unknown time zone 'Mars/Base'" in error_of(
        tmp_path, "cron_jobs: [{name: j, every: 60, message: x, timezone: Mars/Base}]\n")
    assert "'at' 'soon' is not an ISO 8601" in error_of(tmp_path, "cron_jobs: [{name: j, at: soon, message: x}]\n")


def test_cron_job_names_are_unique(tmp_path: Path) -> None:
    message = error_of(tmp_path, "cron_jobs: [{name: x, every: 60, message: a}, {name: x, every: 90, message: b}]\n")
    assert "cron_jobs: two cron_jobs are named 'x'; give each job its own name." in message


@pytest.mark.parametrize("every", [".inf", "1e30", "0.5", ".nan", "315360001"])
def test_cron_every_is_finite_and_bounded(tmp_path: Path, every: str) -> None:
    message = error_of(tmp_path, f"cron_jobs: [{{name: j, every: {every}, message: x}}]\n")
    assert "cron_jobs[0].every: every must be a number of seconds from 1 to 315360000 (10 years)" in message


def test_cron_jobs_deliver_to_a_configured_channel(tmp_path: Path) -> None:
    job = "cron_jobs: [{name: j, every: 60, message: x, deliver_to: {channel: tg, chat: '1'}}]\n"
    message = error_of(tmp_path, "channels: [{type: telegram, token: t-token}]\n" + job)
    assert "Cron job 'j': deliver_to.channel 'tg' is not a configured channel; use one of: telegram." in message
    assert load_config(write(tmp_path, job), env={}, need_model=False).cron_jobs[0].name == "j"  # no channels yet


def test_apscheduler_is_imported_only_for_configs_with_cron_jobs(tmp_path: Path) -> None:
    plain = write(tmp_path, "workspace: /tmp/x\n")
    code = ("import sys\nfrom agent.config_file import load_config\n"
            f"load_config({str(plain)!r}, env={{}}, need_model=False)\n"
            "assert not [m for m in sys.modules if m.startswith('apscheduler')], 'apscheduler imported'\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
