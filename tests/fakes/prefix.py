"""Prompt-prefix stability: is each recorded request a byte-prefix extension of the one before it?"""

from __future__ import annotations

from typing import Any


def strip_cache(value: Any) -> Any:
    """The request without cache_control markers (they move forward each turn by design)."""
    if isinstance(value, dict):
        return {k: strip_cache(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [strip_cache(v) for v in value]
    return value


def is_prefix_extension(prev: dict[str, Any], nxt: dict[str, Any]) -> bool:
    a, b = strip_cache(prev), strip_cache(nxt)
    if (a.get("system"), a.get("tools")) != (b.get("system"), b.get("tools")):
        return False
    return bool(b["messages"][: len(a["messages"])] == a["messages"])
