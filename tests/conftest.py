"""Shared pytest setup: a clean network/credential environment and the fake LLM fixture."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path

import pytest

# tests/ has no __init__.py, so pytest puts tests/ (not the repo root) on sys.path; make
# `import agent` and `import tests.fakes...` resolve to the repo packages.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.fakes.llm import FakeLLM  # noqa: E402

_PROXY_VARS = frozenset({"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"})
_NO_PROXY = "127.0.0.1,localhost"


def _doomed(environ: MutableMapping[str, str]) -> list[str]:
    """Proxy settings (any case) and every ANTHROPIC_* / OPENAI_* variable."""
    return [name for name in environ if name.upper() in _PROXY_VARS or name.startswith(("ANTHROPIC_", "OPENAI_"))]


# Module level: also covers clients and subprocesses created outside a test function.
for _name in _doomed(os.environ):
    del os.environ[_name]
os.environ["NO_PROXY"] = os.environ["no_proxy"] = _NO_PROXY


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-applied per test in case something set them since: every HTTP client stays on loopback."""
    for name in _doomed(os.environ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", _NO_PROXY)
    monkeypatch.setenv("no_proxy", _NO_PROXY)


@pytest.fixture
async def fake_llm() -> AsyncIterator[FakeLLM]:
    async with FakeLLM() as fake:
        yield fake
