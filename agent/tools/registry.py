"""The tool registry: plain async functions in, JSON-schema specs and ``tool_result`` blocks out.

    registry = ToolRegistry()

    @registry.tool(read_only=True)
    async def clock(ctx: ToolContext, tz: str | None = None) -> str:
        '''Tell the current time.

        Args:
            tz: An IANA time zone such as Europe/Paris; the host's zone when omitted.
        '''
        ...

    registry.specs()                    # [ToolSpec(name="clock", description="Tell the current time.", ...)]
    await registry.run(call, ctx)       # {"type": "tool_result", "tool_use_id": ..., "content": ..., "is_error": ...}

The first docstring paragraph becomes the description and the ``Args:`` section the parameter
descriptions. The first parameter is always ``ctx`` and is not part of the schema. ``run`` never
raises: a ``ToolError`` or bad arguments become an ``is_error`` result the model can act on, and
anything else is logged with an incident id (STYLE principle 5).
"""

from __future__ import annotations

import inspect
import logging
import re
import secrets
import types
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from agent.bus import Inbound
from agent.config import ToolsConfig
from agent.errors import ToolError
from agent.types import Block, ToolCall, ToolOutput, ToolSpec

logger = logging.getLogger(__name__)

Handler = Callable[["ToolContext", dict[str, Any]], Awaitable[ToolOutput]]
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SIMPLE: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
_ARG_LINE = re.compile(r"^(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


@dataclass
class ToolContext:
    """What a tool may know about the turn that calls it."""

    workspace: Path  # resolved absolute path
    config: ToolsConfig
    protected: tuple[Path, ...] = ()  # absolute paths tools may never read or write (the config file, etc.)
    session_key: str = ""
    inbound: Inbound | None = None  # the message that started this turn (where a reminder or result goes)

    def __post_init__(self) -> None:
        self.workspace = Path(self.workspace).expanduser().resolve()
        self.protected = tuple(Path(p).expanduser().resolve() for p in self.protected)


@dataclass(frozen=True)
class _Tool:
    spec: ToolSpec
    handler: Handler
    read_only: bool


class ToolRegistry:
    """Tools by name. Built-in and MCP tools live side by side."""

    def __init__(self) -> None:
        self._tools: dict[str, _Tool] = {}
        self.incidents = 0  # unexpected exceptions seen by run(), for health reporting

    def register(self, fn: Callable[..., Awaitable[ToolOutput]], *, name: str | None = None,
                 read_only: bool = False) -> None:
        """Add an async function ``fn(ctx, ...) -> str``; its docstring and signature become the spec."""
        spec = spec_from_function(fn, name)
        self.add(spec, _bind(fn), read_only=read_only)

    def tool(self, *, name: str | None = None, read_only: bool = False) -> Callable[[F], F]:
        """Decorator form of ``register``: ``@registry.tool(read_only=True)``."""

        def decorator(fn: F) -> F:
            self.register(fn, name=name, read_only=read_only)
            return fn

        return decorator

    def add(self, spec: ToolSpec, handler: Handler, *, read_only: bool = False) -> None:
        """Add a tool with a ready-made JSON schema (MCP tools); ``handler(ctx, arguments)``."""
        if not _NAME.match(spec.name):
            raise ValueError(f"tool name {spec.name!r} must be 1-64 letters, digits, '_' or '-'")
        if spec.name in self._tools:
            raise ValueError(f"a tool named {spec.name!r} is already registered")
        self._tools[spec.name] = _Tool(spec, handler, read_only)

    def remove(self, name: str) -> None:
        """Forget a tool (an MCP server withdrew it); unknown names are ignored."""
        self._tools.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._tools)

    def subset(self, names: list[str] | None = None, *, exclude: tuple[str, ...] = ()) -> ToolRegistry:
        """A registry sharing these tools (all when ``names`` is None), minus ``exclude``."""
        unknown = sorted(set(names or ()) - set(self._tools))
        if unknown:
            raise ToolError(f"Unknown tool {unknown[0]!r}. Available tools: {', '.join(self.names())}.")
        child = ToolRegistry()
        child._tools = {n: t for n, t in self._tools.items()
                        if (names is None or n in names) and n not in exclude}
        return child

    def specs(self) -> list[ToolSpec]:
        """Every tool's spec, sorted by name so the prompt prefix stays byte-identical."""
        return [self._tools[name].spec for name in sorted(self._tools)]

    def is_read_only(self, name: str) -> bool:
        tool = self._tools.get(name)
        return tool is not None and tool.read_only

    async def run(self, call: ToolCall, ctx: ToolContext) -> Block:
        """Run one call and return its ``tool_result`` block. Never raises (except on cancellation)."""
        try:
            content, is_error = await self._call(call, ctx), False
        except ToolError as exc:
            content, is_error = str(exc), True
        except Exception:
            incident = secrets.token_hex(4)
            self.incidents += 1
            logger.exception("Tool %s failed (incident %s, session %s)", call.name, incident, ctx.session_key)
            content = (f"Internal error in tool {call.name} (incident {incident}); "
                       "the owner can find it in the log.")
            is_error = True
        return {"type": "tool_result", "tool_use_id": call.id,
                "content": _shorten(content, ctx.config.max_result_chars), "is_error": is_error}

    async def _call(self, call: ToolCall, ctx: ToolContext) -> ToolOutput:
        tool = self._tools.get(call.name)
        if tool is None:
            raise ToolError(f"Unknown tool {call.name!r}. Available tools: {', '.join(sorted(self._tools))}.")
        if call.error:
            raise ToolError(f"The arguments for {call.name} were not valid JSON ({call.error}). "
                            "Send one JSON object that matches the tool's parameters.")
        arguments = validate_arguments(call.name, tool.spec.parameters, call.arguments)
        result = await tool.handler(ctx, arguments)
        if isinstance(result, list) and all(isinstance(b, dict) and b.get("type") in ("text", "image")
                                            for b in result):
            return result
        if not isinstance(result, str):
            raise TypeError(f"tool {call.name} returned {type(result).__name__}, expected str or blocks")
        return result


def builtin_registry(config: ToolsConfig) -> ToolRegistry:
    """The built-in tools this configuration enables: file tools always, exec and web_fetch on request."""
    # Imported here because the tool modules import ToolContext and ToolRegistry from this one.
    from agent.tools import files, shell, web

    registry = ToolRegistry()
    files.register(registry)
    if config.exec.enabled:
        shell.register(registry, config.exec)
    if config.web.enabled:
        web.register(registry)
    return registry


def truncate(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` characters with a marker saying how much was dropped."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n[... truncated {len(text) - limit} characters ...]"


def _shorten(content: ToolOutput, limit: int) -> ToolOutput:
    """Truncate a result's text; in a list of blocks, the text blocks share the limit."""
    if isinstance(content, str):
        return truncate(content, limit)
    out: list[Block] = []
    for block in content:
        if block.get("type") == "text":
            text = str(block.get("text", ""))
            block = {"type": "text", "text": truncate(text, max(limit, 0))}
            limit -= len(text)
        out.append(block)
    return out


def _bind(fn: Callable[..., Awaitable[ToolOutput]]) -> Handler:
    async def handler(ctx: ToolContext, arguments: dict[str, Any]) -> ToolOutput:
        return await fn(ctx, **arguments)

    return handler


# --- schema from a function ---------------------------------------------------------------------


def spec_from_function(fn: Callable[..., Any], name: str | None = None) -> ToolSpec:
    """Build a ToolSpec from an async function's signature and Google-style docstring."""
    tool_name = name or fn.__name__
    if not inspect.iscoroutinefunction(fn):
        raise TypeError(f"tool {tool_name} must be an async function")
    doc = inspect.getdoc(fn)
    if not doc:
        raise ValueError(f"tool {tool_name} needs a docstring: it is the description the model sees")
    description, arg_docs = parse_docstring(doc)
    params = list(inspect.signature(fn).parameters.values())
    if not params or params[0].name != "ctx":
        raise TypeError(f"tool {tool_name}: the first parameter must be 'ctx: ToolContext'")
    hints = get_type_hints(fn)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in params[1:]:
        if param.kind not in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            raise TypeError(f"tool {tool_name}: parameter {param.name} must be a plain named parameter")
        if param.name not in hints:
            raise TypeError(f"tool {tool_name}: parameter {param.name} needs a type annotation")
        try:
            schema, optional = _type_schema(hints[param.name])
        except TypeError as exc:
            raise TypeError(f"tool {tool_name}, parameter {param.name}: {exc}") from None
        if param.name in arg_docs:
            schema["description"] = arg_docs[param.name]
        if param.default is not param.empty and param.default is not None:
            schema["default"] = param.default
        if not optional and param.default is param.empty:
            required.append(param.name)
        properties[param.name] = schema
    parameters = {"type": "object", "properties": properties, "required": required,
                  "additionalProperties": False}
    return ToolSpec(tool_name, description, parameters)


def _type_schema(hint: Any) -> tuple[dict[str, Any], bool]:
    """JSON schema for one annotation, and whether it is optional (``X | None``)."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1 or len(args) != 2:
            raise TypeError(f"unsupported union {hint!r}; only 'X | None' is allowed")
        return _type_schema(rest[0])[0], True
    if origin is Literal:
        kinds = {_SIMPLE.get(type(a)) for a in args}
        schema: dict[str, Any] = {"enum": list(args)}
        if len(kinds) == 1 and None not in kinds:
            schema["type"] = kinds.pop()
        return schema, False
    if origin is list and args == (str,):
        return {"type": "array", "items": {"type": "string"}}, False
    if hint in _SIMPLE:
        return {"type": _SIMPLE[hint]}, False
    raise TypeError(f"unsupported annotation {hint!r}; use str, int, float, bool, list[str], "
                    "Literal[...] or X | None")


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The first paragraph (joined into one line) and the ``Args:`` descriptions by name."""
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    for line in lines:
        if not line.strip():
            break
        summary.append(line.strip())
    start = next((i for i, line in enumerate(lines) if line.strip() in ("Args:", "Arguments:")), None)
    if start is None:
        return " ".join(summary), {}
    base = _indent(lines[start])
    entry_indent: int | None = None
    current: str | None = None
    args: dict[str, str] = {}
    for line in lines[start + 1:]:
        if not line.strip():
            continue
        indent = _indent(line)
        if indent <= base:
            break
        match = _ARG_LINE.match(line.strip())
        if match and entry_indent in (None, indent):
            entry_indent, current = indent, match.group(1)
            args[current] = match.group(2)
        elif current is not None:
            args[current] = f"{args[current]} {line.strip()}".strip()
    return " ".join(summary), args


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


# --- argument validation --------------------------------------------------------------------------

_CHECKS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}
_EXPECTED = {"string": "a string", "integer": "an integer", "number": "a number",
             "boolean": "true or false", "array": "an array", "object": "an object"}


def validate_arguments(tool: str, schema: dict[str, Any], arguments: Any) -> dict[str, Any]:
    """Check ``arguments`` against an object schema; raise ToolError naming the bad parameter.

    A ``null`` for an optional parameter means "use the default" and is dropped. The only
    coercion is integer to float for ``number`` parameters.
    """
    if not isinstance(arguments, dict):
        raise ToolError(f"The arguments for {tool} must be a JSON object, got {_json_type(arguments)}.")
    props: dict[str, Any] = schema.get("properties", {})
    required: list[str] = schema.get("required", [])
    for key in required:
        if arguments.get(key) is None:
            raise ToolError(f"Missing required parameter {key!r} ({_describe(props.get(key))}) for tool {tool}.")
    if schema.get("additionalProperties") is False:
        unknown = sorted(set(arguments) - set(props))
        if unknown:
            raise ToolError(f"Unknown parameter {unknown[0]!r} for tool {tool}; it takes: "
                            f"{', '.join(props) or 'no parameters'}.")
    checked: dict[str, Any] = {}
    for key, value in arguments.items():
        if value is None and key not in required:
            continue
        prop = props.get(key)
        checked[key] = _check_value(tool, key, prop, value) if isinstance(prop, dict) else value
    return checked


def _check_value(tool: str, key: str, prop: dict[str, Any], value: Any) -> Any:
    kind = prop.get("type")
    if isinstance(kind, str) and kind in _CHECKS:
        if not _CHECKS[kind](value):
            raise ToolError(f"Parameter {key!r} of tool {tool} must be {_describe(prop)}, "
                            f"got {_json_type(value)} {_preview(value)}.")
        if kind == "number":
            value = float(value)
        items = prop.get("items")
        if kind == "array" and isinstance(items, dict) and items.get("type") == "string":
            if not all(isinstance(item, str) for item in value):
                raise ToolError(f"Parameter {key!r} of tool {tool} must be an array of strings.")
    enum = prop.get("enum")
    if isinstance(enum, list) and not any(_json_type(value) == _json_type(e) and value == e for e in enum):
        raise ToolError(f"Parameter {key!r} of tool {tool} must be one of "
                        f"{', '.join(map(repr, enum))}; got {_preview(value)}.")
    return value


def _describe(prop: Any) -> str:
    if not isinstance(prop, dict):
        return "a value"
    if isinstance(prop.get("enum"), list):
        return "one of " + ", ".join(map(repr, prop["enum"]))
    kind = prop.get("type")
    if kind == "array" and isinstance(prop.get("items"), dict) and prop["items"].get("type") == "string":
        return "an array of strings"
    return _EXPECTED.get(kind, "a value") if isinstance(kind, str) else "a value"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    for name in ("boolean", "integer", "number", "string", "array", "object"):
        if _CHECKS[name](value):
            return name
    return type(value).__name__


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
