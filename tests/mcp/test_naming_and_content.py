"""Pure parts of the MCP client: registry names, and results turned into tool output."""

from __future__ import annotations

import base64
import re
import stat
import subprocess
import sys
from pathlib import Path

from mcp_types import (
    AudioContent,
    BlobResourceContents,
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
)

from agent.mcp.content import to_output
from agent.mcp.naming import tool_name
from agent.mcp.transport import server_env
from tests.mcp.helpers import stdio

VALID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")


def test_plain_names_are_kept() -> None:
    assert tool_name("github", "create_issue") == "mcp__github__create_issue"
    assert tool_name("my-srv", "get-time") == "mcp__my-srv__get-time"


def test_unsafe_characters_become_underscores() -> None:
    assert tool_name("my.server", "get time/now") == "mcp__my_server__get_time_now"
    assert tool_name("ünï", "tööl") == "mcp___n___t__l"


def test_long_names_are_cut_with_a_stable_hash() -> None:
    long = tool_name("server", "x" * 100)
    assert VALID.match(long) and len(long) == 64
    assert long == tool_name("server", "x" * 100)  # the same on every start
    assert long.startswith("mcp__server__xxx") and re.search(r"_[0-9a-f]{8}$", long)
    assert tool_name("server", "x" * 100) != tool_name("server", "x" * 99 + "y")


def test_collisions_get_a_deterministic_suffix() -> None:
    first = tool_name("s", "a.b")
    second = tool_name("s", "a b", taken={first})
    assert first == "mcp__s__a_b" and second.startswith("mcp__s__a_b_") and second != first
    assert second == tool_name("s", "a b", taken={first})
    third = tool_name("s", "a b", taken={first, second})  # even the suffixed name is taken: a longer hash
    assert third not in (first, second) and VALID.match(third)


def test_every_name_is_valid_for_the_model_apis() -> None:
    for server, tool in [("a" * 70, "b"), ("s", ""), ("😀", "🙂" * 40), ("s", "-" * 64)]:
        assert VALID.match(tool_name(server, tool)), (server, tool)


def test_text_only_results_are_a_string(tmp_path: Path) -> None:
    result = CallToolResult(content=[TextContent(text="one"), TextContent(text="two")])
    assert to_output(result, tmp_path) == "one\ntwo"
    assert to_output(CallToolResult(content=[]), tmp_path) == "The tool returned no content."


def test_images_are_saved_privately_and_returned_by_path(tmp_path: Path) -> None:
    data = base64.b64encode(PNG).decode()
    result = CallToolResult(content=[TextContent(text="a pixel"), ImageContent(data=data, mime_type="image/png")])
    output = to_output(result, tmp_path / "inbox" / "mcp")
    assert isinstance(output, list) and output[0] == {"type": "text", "text": "a pixel"}
    image = output[1]
    path = Path(image["path"])
    assert image["type"] == "image" and image["media_type"] == "image/png" and path.suffix == ".png"
    assert path.read_bytes() == PNG and path.parent == tmp_path / "inbox" / "mcp"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert to_output(result, tmp_path / "inbox" / "mcp") == output  # stored once, by content


def test_what_the_model_cannot_see_is_described(tmp_path: Path) -> None:
    result = CallToolResult(content=[
        AudioContent(data=base64.b64encode(b"12345678").decode(), mime_type="audio/wav"),
        EmbeddedResource(resource=TextResourceContents(uri="file:///a.txt", text="embedded text")),
        EmbeddedResource(resource=BlobResourceContents(uri="file:///b.bin", blob="AAAA", mime_type="application/zip")),
        ResourceLink(name="report", uri="file:///r.pdf", mime_type="application/pdf"),
        ImageContent(data="AAAA", mime_type="image/svg+xml"),
    ])
    lines = str(to_output(result, tmp_path)).splitlines()
    assert lines == ["[audio (audio/wav, 8 bytes) not shown]", "embedded text",
                     "[resource file:///b.bin (application/zip, 3 bytes) not shown]",
                     "[resource link: report <file:///r.pdf> (application/pdf)]",
                     "[an image of type image/svg+xml the model cannot see]"]


def test_structured_content_is_added_unless_already_said(tmp_path: Path) -> None:
    summary = CallToolResult(content=[TextContent(text="3 items")], structured_content={"items": [1, 2, 3]})
    assert to_output(summary, tmp_path) == '3 items\nStructured result: {"items":[1,2,3]}'
    same = CallToolResult(content=[TextContent(text='{\n  "a": 1\n}')], structured_content={"a": 1})
    assert to_output(same, tmp_path) == '{\n  "a": 1\n}'
    wrapped = CallToolResult(content=[TextContent(text="5")], structured_content={"result": 5})
    assert to_output(wrapped, tmp_path) == "5"
    only = CallToolResult(content=[], structured_content={"ok": True})
    assert to_output(only, tmp_path) == 'Structured result: {"ok":true}'


def test_server_environment_is_exactly_the_entry_plus_basics() -> None:
    daemon = {"PATH": "/bin", "HOME": "/home/me", "LANG": "C.UTF-8", "LC_TIME": "de_DE", "TZ": "UTC",
              "ANTHROPIC_API_KEY": "sk-ant-secret", "OPENAI_API_KEY": "sk-x", "SHELL": "/bin/zsh", "USER": "me"}
    env = server_env(stdio("s", env={"TOKEN": "t", "HOME": "/srv"}), daemon)
    assert env == {"PATH": "/bin", "HOME": "/srv", "LANG": "C.UTF-8", "LC_TIME": "de_DE", "TZ": "UTC", "TOKEN": "t"}


def test_importing_the_package_does_not_import_the_sdk() -> None:
    code = ("import sys, agent.mcp, agent.mcp.cli; "
            "print(sorted(m for m in sys.modules if m == 'mcp' or m.startswith(('mcp.', 'mcp_types'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
