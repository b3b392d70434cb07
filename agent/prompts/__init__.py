"""Prompts are files: ``load("system")`` reads ``agent/prompts/system.md``."""

from __future__ import annotations

from functools import cache
from pathlib import Path

_HERE = Path(__file__).parent


@cache
def load(name: str) -> str:
    return (_HERE / f"{name}.md").read_text(encoding="utf-8").strip()
