"""A real MCP server over HTTP that insists on a bearer token.

    app = build_app("s3cret")          # streamable HTTP; serve it with uvicorn on 127.0.0.1, endpoint /mcp
    app = build_app("s3cret", "sse")   # the older SSE transport, endpoint /sse
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer

Scope = dict[str, Any]


def build_app(token: str, transport: str = "http") -> Any:
    server = MCPServer("web", log_level="WARNING")

    @server.tool()
    def shout(text: str) -> str:
        """Upper-case the text."""
        return text.upper()

    @server.tool()
    def stats(values: list[float]) -> dict[str, float]:
        """Count and sum the values."""
        return {"count": len(values), "sum": sum(values)}

    inner = server.sse_app() if transport == "sse" else server.streamable_http_app()
    expected = f"Bearer {token}".encode()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and dict(scope["headers"]).get(b"authorization") != expected:
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"missing or wrong token"})
            return
        await inner(scope, receive, send)

    return app
