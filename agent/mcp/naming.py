"""Registry names for MCP tools: ``mcp__<server>__<tool>``, safe for every model API.

    tool_name("github", "create_issue")            # "mcp__github__create_issue"
    tool_name("my.server", "get time")             # "mcp__my_server__get_time"
    tool_name("s", "x" * 80)                       # 64 characters, ending in "_" + 8 hex digits
    tool_name("s", "a.b", taken={"mcp__s__a_b"})   # "mcp__s__a_b_" + 8 hex digits

Model APIs accept 1-64 characters from ``[A-Za-z0-9_-]``. Anything else becomes ``_``; a name that
is too long is cut and given a hash of the original (server, tool) pair, so it is the same on every
start. A name that is already taken gets the same hash suffix (longer if even that is taken).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Container

MAX_LENGTH = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def tool_name(server: str, tool: str, taken: Container[str] = ()) -> str:
    """The registry name for ``tool`` of ``server``, not in ``taken``."""
    name = _UNSAFE.sub("_", f"mcp__{server}__{tool}")
    if len(name) <= MAX_LENGTH and name not in taken:
        return name
    digest = hashlib.sha256(f"{server}\0{tool}".encode()).hexdigest()
    for size in range(8, len(digest) + 1, 4):
        candidate = f"{name[:MAX_LENGTH - size - 1]}_{digest[:size]}"
        if candidate not in taken:
            return candidate
    raise ValueError(f"no free tool name for {tool!r} of MCP server {server!r}")  # needs 2**256 tools


def safe_file_name(name: str) -> str:
    """A server name fit for a file name (``logs/mcp-<name>.log``)."""
    return _UNSAFE.sub("_", name)[:MAX_LENGTH] or "server"
