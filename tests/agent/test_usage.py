"""Usage log: today's totals without reading the whole history, prices, and the budget checks."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import LLMConfig
from agent.errors import BudgetExceeded, ConfigError
from agent.providers import build_provider
from agent.types import Usage
from agent.usage import UsageLog, first_line_at


@settings(max_examples=200, deadline=None)
@given(times=st.lists(st.floats(0, 1e6), max_size=40).map(sorted), since=st.floats(-10, 1.1e6),
       pads=st.lists(st.integers(0, 40), min_size=40, max_size=40))
def test_first_line_at_finds_the_first_record_of_the_day(tmp_path_factory: pytest.TempPathFactory,
                                                          times: list[float], since: float, pads: list[int]) -> None:
    lines = [json.dumps({"time": t, "model": "m" * pad}) + "\n" for t, pad in zip(times, pads, strict=False)]
    path = tmp_path_factory.mktemp("u") / "usage.jsonl"
    path.write_text("".join(lines))
    assert first_line_at(path, since) == sum(len(line) for line, t in zip(lines, times, strict=False) if t < since)


def test_only_todays_records_count_toward_the_budget(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"
    yesterday = time.time() - 86_400 * 2
    path.write_text("".join(json.dumps({"time": yesterday + i, "model": "m", "input": 1000, "output": 0}) + "\n"
                            for i in range(5000)))
    log = UsageLog(path, LLMConfig(daily_token_budget=1500))
    log.check_budget()  # 5 million tokens spent, but not today
    log.record("m", "anthropic", Usage(1000, 600))
    with pytest.raises(BudgetExceeded, match="1,500 tokens"):
        log.check_budget()


def test_a_dollar_budget_needs_a_known_price(tmp_path: Path) -> None:
    llm = LLMConfig(provider="ollama", model="qwen3:8b", daily_budget_usd=1.0)
    with pytest.raises(ConfigError, match=r"price of 'qwen3:8b' is unknown.*llm.prices"):
        build_provider(llm, None)
    priced = LLMConfig(provider="ollama", model="qwen3:8b", daily_budget_usd=1.0,
                       prices={"qwen3:8b": {"input": 0.5, "output": 1.0}})
    log = UsageLog(tmp_path / "usage.jsonl", priced)
    assert log.record("qwen3:8b", "ollama", Usage(2_000_000, 0), served_by="qwen3:8b-2026-01") == 1.0
    with pytest.raises(BudgetExceeded):
        log.check_budget()


def test_price_is_found_by_the_configured_name_when_the_api_reports_a_dated_one(tmp_path: Path) -> None:
    llm = LLMConfig(prices={"my-model": {"input": 1, "output": 2}})
    log = UsageLog(tmp_path / "usage.jsonl", llm)
    assert log.record("my-model", "openai", Usage(1_000_000, 1_000_000), served_by="my-model-2026-11-01") == 3.0
