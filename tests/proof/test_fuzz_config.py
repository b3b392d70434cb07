"""Hostile config files: every failure is a ConfigError with a message, never another exception."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import Config
from agent.config_file import expand_env, load_config, validate
from agent.errors import ConfigError

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Keys the schema knows, at every level, so the fuzzer reaches the validators and not only extra_forbidden.
KEYS = sorted({*Config.model_fields, "provider", "model", "api_key", "base_url", "max_tokens", "temperature",
               "timeout", "fallback", "prices", "input", "output", "type", "token", "name", "allow_from",
               "group_policy", "telegram", "discord", "slack", "alert_after_minutes", "dream", "enabled",
               "interval_minutes", "transport", "command", "args", "env", "url", "headers", "schedule",
               "every", "at", "timezone", "message", "deliver_to", "channel", "chat", "catch_up_window",
               "level", "max_bytes", "exec", "web", "restrict_to_workspace", "max_steps", "port", "mode"})

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**30, max_value=10**60),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["telegram", "discord", "slack", "anthropic", "openai", "0 9 * * 1-5", "@daily", "90s",
                     "1h", "9999d", "${HOME}", "${NOPE}", "${NOPE:-x}", "0001-01-01T00:00", "9999-12-31T23:59",
                     "2026-03-29T02:30", "Europe/Paris", "Asia/Tokyo", "Pacific/Kiritimati", "Etc/GMT+12",
                     "../etc", "", "\x00", "*/0 * * * *", "stdio", "http", "DEBUG", "1e999"]),
)
values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=5)),
    max_leaves=25,
)
documents = st.dictionaries(st.sampled_from(KEYS), values, max_size=6)
cron_job = st.fixed_dictionaries(
    {"name": st.text(min_size=1, max_size=5), "message": st.just("hi")},
    optional={"schedule": scalars, "every": scalars, "at": scalars, "timezone": scalars,
              "deliver_to": values, "enabled": scalars})


def _must_be_config_error(call: Any) -> None:
    try:
        result = call()
    except ConfigError as exc:
        assert str(exc).strip()
    else:
        assert isinstance(result, Config)


@FAST
@given(documents)
def test_validate_random_nested_dicts(data: dict[str, Any]) -> None:
    _must_be_config_error(lambda: validate(expand_env(data, {"HOME": "/home/x"}, Path("c.yaml")), Path("c.yaml")))


@FAST
@given(st.lists(cron_job, min_size=1, max_size=3), st.lists(values, max_size=2))
def test_validate_random_cron_jobs_and_channels(jobs: list[dict[str, Any]], channels: list[Any]) -> None:
    _must_be_config_error(lambda: validate({"cron_jobs": jobs, "channels": channels}, None))


def _load_text(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "config.yaml")
        path.write_bytes(data)
        _must_be_config_error(lambda: load_config(path, {}, need_model=False))


@FAST
@given(documents)
def test_load_yaml_of_random_documents(data: dict[str, Any]) -> None:
    _load_text(yaml.safe_dump(data, allow_unicode=True).encode("utf-8", "surrogatepass"))


yaml_bits = st.sampled_from([
    "a: b\n", "llm:\n", "  provider: x\n", "- 1\n", "&a [*a]\n", "x: &a {k: *a}\n", "workspace: &w [*w]\n",
    "? [a]\n: b\n", "!!python/object:os.system x\n", "!!binary aGk=\n", "!!set {a, b}\n", "2026-01-01\n",
    "{", "[", "'", '"', "\t", ": :\n", "---\n", "...\n", "%YAML 1.1\n", "<<: *a\n", "\x00", "\x1b[2J", "\ufeff",
    "channels: [{type: telegram, token: x}, {type: telegram, token: y}]\n", "cron_jobs: [{name: a}]\n",
])


@FAST
@given(st.lists(yaml_bits | st.text(max_size=20), max_size=10))
def test_load_random_yaml_text(parts: list[str]) -> None:
    _load_text("".join(parts).encode("utf-8", "surrogatepass"))


@FAST
@given(st.binary(max_size=300))
def test_load_random_bytes(data: bytes) -> None:
    _load_text(data)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([b"a", b"workspace: ", b"# ", b"[", b"\xff"]), st.integers(1, 2_000_000))
def test_load_huge_lines(prefix: bytes, size: int) -> None:
    _load_text(prefix + b"x" * size + b"\n")


def test_recursive_alias_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("workspace: &w [*w]\n")
    _must_be_config_error(lambda: load_config(path, {}, need_model=False))


def test_at_beyond_the_calendar_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    for at, tz in (("0001-01-01T00:00", "Asia/Tokyo"), ("9999-12-31T23:59", "America/New_York")):
        path.write_text(f"cron_jobs: [{{name: x, message: y, at: '{at}', timezone: {tz}}}]\n")
        _must_be_config_error(lambda: load_config(path, {}, need_model=False))


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(KEYS), st.binary(min_size=1, max_size=50))
def test_a_directory_or_unreadable_path_is_a_config_error(key: str, junk: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _must_be_config_error(lambda: load_config(Path(tmp), {}, need_model=False))
        _must_be_config_error(lambda: load_config(Path(tmp, key, "missing.yaml"), {}, need_model=False))
