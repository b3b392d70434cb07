"""Fixtures for the MCP client tests: a harness that closes its managers, and an HTTP server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from tests.mcp.helpers import Harness, until


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path / "ws")
    yield h
    for manager in h.managers:
        await manager.aclose()


@pytest.fixture
async def http_server() -> AsyncIterator[Callable[[Any], Awaitable[str]]]:
    """Serve an ASGI app on 127.0.0.1 (a free port); returns its base URL."""
    running: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []

    async def serve(app: Any) -> str:
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        task = asyncio.create_task(server.serve())
        running.append((server, task))
        await until(lambda: server.started, timeout=10)
        port = server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    yield serve
    for server, task in running:
        server.should_exit = True
        await task
