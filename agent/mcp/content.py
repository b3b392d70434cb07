"""An MCP ``CallToolResult`` as a reverie tool output (text, or text and image blocks).

    output = to_output(result, workspace / "inbox" / "mcp")
    # "5"                                                        plain text stays a string
    # [{"type": "text", "text": "a red pixel"},
    #  {"type": "image", "media_type": "image/png", "path": ".../inbox/mcp/3f2a....png"}]

Images are saved under ``inbox`` (named by their SHA-256, so a repeated image is stored once) and
referenced by path; the context renderer loads the bytes when it sends them to the model. Audio,
binary resources and resource links become a one-line description. Structured content is added as
``Structured result: <json>`` unless a text block already says the same.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.types import Block, ToolOutput

if TYPE_CHECKING:
    from mcp_types import CallToolResult, ContentBlock, EmbeddedResource

# The image types the model APIs accept; others are described instead of shown.
IMAGE_TYPES = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp"}


def to_output(result: CallToolResult, inbox: Path) -> ToolOutput:
    """Text when the result has no images, else a list of text and image blocks."""
    blocks = [_block(item, inbox) for item in result.content]
    structured = result.structured_content
    if structured is not None and not _already_said(structured, blocks):
        text = json.dumps(structured, ensure_ascii=False, separators=(",", ":"))
        blocks.append({"type": "text", "text": f"Structured result: {text}"})
    if not blocks:
        return "The tool returned no content."
    if all(block["type"] == "text" for block in blocks):
        return "\n".join(block["text"] for block in blocks)
    return blocks


def output_text(output: ToolOutput) -> str:
    """The text of an output, for an error message (images are left out)."""
    if isinstance(output, str):
        return output
    return "\n".join(block["text"] for block in output if block.get("type") == "text")


def _block(item: ContentBlock, inbox: Path) -> Block:
    if item.type == "text":
        return {"type": "text", "text": item.text}
    if item.type == "image":
        return _image(item.data, item.mime_type, inbox)
    if item.type == "audio":
        return _text(f"[audio ({item.mime_type}, {_decoded_size(item.data)} bytes) not shown]")
    if item.type == "resource":
        return _resource(item)
    if item.type == "resource_link":
        about = ", ".join(x for x in (item.mime_type, item.description) if x)
        return _text(f"[resource link: {item.name} <{item.uri}>{f' ({about})' if about else ''}]")
    return _text(f"[{item.type} content not shown]")


def _resource(item: EmbeddedResource) -> Block:
    resource = item.resource
    text = getattr(resource, "text", None)
    if isinstance(text, str):
        return _text(text)
    blob = getattr(resource, "blob", "")
    kind = resource.mime_type or "binary"
    return _text(f"[resource {resource.uri} ({kind}, {_decoded_size(blob)} bytes) not shown]")


def _image(data: str, media_type: str, inbox: Path) -> Block:
    ext = IMAGE_TYPES.get(media_type)
    if ext is None:
        return _text(f"[an image of type {media_type} the model cannot see]")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return _text("[an image that could not be decoded]")
    inbox.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = inbox / f"{hashlib.sha256(raw).hexdigest()[:32]}.{ext}"
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        os.replace(tmp, path)  # never a half-written image under the final name
    return {"type": "image", "media_type": media_type, "path": str(path)}


def _already_said(structured: Any, blocks: list[Block]) -> bool:
    """Whether a text block holds the same JSON (also the SDK's ``{"result": value}`` wrapping)."""
    same: list[Any] = [structured]
    if isinstance(structured, dict) and list(structured) == ["result"]:
        same.append(structured["result"])
    for block in blocks:
        if block["type"] != "text":
            continue
        if block["text"] in same:  # a wrapped string result is its own text
            return True
        try:
            if json.loads(block["text"]) in same:
                return True
        except ValueError:
            continue
    return False


def _decoded_size(data: str) -> int:
    return len(data) * 3 // 4 - data.count("=", -2)


def _text(text: str) -> Block:
    return {"type": "text", "text": text}
