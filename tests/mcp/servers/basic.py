"""A real MCP server (stdio) with one tool per behaviour the client must handle.

    python tests/mcp/servers/basic.py [--hang-at-start | --exit-at-start | --exit-unless PATH]

``COUNT_FILE`` (from the entry's env), when set, gets one line per call of ``hang`` and ``crash``,
so a test can prove a call was not retried.
"""

from __future__ import annotations

import base64
import os
import sys


def start_up_failures() -> None:
    """The start-up misbehaviours, before the SDK import (which takes most of a second)."""
    if "--exit-at-start" in sys.argv:
        print("basic: refusing to start (--exit-at-start)", file=sys.stderr)
        sys.exit(4)
    if "--exit-unless" in sys.argv and not os.path.exists(sys.argv[sys.argv.index("--exit-unless") + 1]):
        print("basic: the file I need is not there yet", file=sys.stderr)
        sys.exit(5)
    if "--hang-at-start" in sys.argv:
        sys.stdin.buffer.read()  # never answer `initialize`, but leave when the client closes stdin
        sys.exit(0)


if __name__ == "__main__":
    start_up_failures()

import anyio  # noqa: E402
from mcp.server.mcpserver import Context, MCPServer  # noqa: E402
from mcp.server.mcpserver.exceptions import ToolError  # noqa: E402
from mcp.server.mcpserver.utilities.types import Image  # noqa: E402
from mcp.types import (  # noqa: E402
    AudioContent,
    CallToolResult,
    EmbeddedResource,
    ResourceLink,
    TextContent,
    TextResourceContents,
    ToolAnnotations,
)

# A 1x1 red PNG.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")

server = MCPServer("basic", log_level="WARNING")


def count(name: str) -> None:
    path = os.environ.get("COUNT_FILE")
    if path:
        with open(path, "a") as f:
            f.write(name + "\n")


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def echo(text: str) -> str:
    """Repeat the text back."""
    return text


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool(structured_output=False)
def picture() -> list[object]:
    """Return a caption and a tiny PNG."""
    return ["a red pixel", Image(data=PNG, format="png")]


@server.tool(structured_output=False)
def mixed() -> list[object]:
    """Return audio, an embedded text resource and a resource link."""
    return [AudioContent(data=base64.b64encode(b"RIFF....").decode(), mime_type="audio/wav"),
            EmbeddedResource(resource=TextResourceContents(uri="file:///notes.txt", text="the notes")),
            ResourceLink(name="report", uri="file:///report.pdf", mime_type="application/pdf"),
            TextContent(text="done")]


@server.tool()
def summary() -> CallToolResult:
    """A short text plus the full data as structured content."""
    return CallToolResult(content=[TextContent(text="3 items")], structured_content={"items": [1, 2, 3]})


@server.tool(name="notes.search")
def notes_search_dotted(query: str) -> str:
    """A name with a dot, which model APIs do not accept."""
    return f"dotted {query}"


@server.tool(name="notes_search")
def notes_search(query: str) -> str:
    """The name the dotted one would be sanitised into."""
    return f"plain {query}"


@server.tool(name="t" * 100)
def long_named() -> str:
    """A name longer than model APIs accept."""
    return "long"


@server.tool()
def fail(reason: str) -> str:
    """Always fail with the reason."""
    raise ToolError(f"refused: {reason}")


@server.tool()
def env_keys() -> list[str]:
    """The names of this process's environment variables."""
    return sorted(os.environ)


@server.tool()
def env_value(name: str) -> str:
    """One environment variable's value (or '<unset>')."""
    return os.environ.get(name, "<unset>")


@server.tool()
def crash() -> str:
    """Die in the middle of the call."""
    count("crash")
    os._exit(3)


@server.tool()
async def hang() -> str:
    """Never answer."""
    count("hang")
    await anyio.sleep(3600)
    return "unreachable"


@server.tool()
def pid() -> int:
    """This server's process id."""
    return os.getpid()


@server.tool()
async def grow(ctx: Context) -> str:
    """Add a tool named 'extra', drop 'add', and tell the client the list changed."""

    def extra() -> str:
        """A tool that appeared later."""
        return "extra!"

    server.add_tool(extra)
    server.remove_tool("add")
    await ctx.session.send_tool_list_changed()
    return "grown"


if __name__ == "__main__":
    print("basic: serving on stdio", file=sys.stderr, flush=True)  # for the private log test
    server.run()
