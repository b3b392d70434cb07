"""The agent loop: call the model, run the tools it asks for, append the results, repeat.

    result = await run_turn(model, tools, ctx, session, build_request, max_steps=20)

Every assistant message and every batch of tool results is appended to the session as soon as it
exists, so a crash loses at most the step in flight (and the session store repairs an unanswered
tool call on the next load).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from agent.errors import ContextOverflow
from agent.tools.registry import ToolContext, ToolRegistry
from agent.types import Block, Completion, Message, Request, TextSink, ToolCall, Usage

logger = logging.getLogger(__name__)
ToolSink = Callable[[ToolCall], Awaitable[None]]
CUT_OFF_CALL = ("Your reply was cut off at the output token limit before this tool call was complete, "
                "so it was not run. Make the call again with less content.")


class Model(Protocol):
    async def complete(self, request: Request, on_text: TextSink | None = None, *,
                       session: str = "") -> Completion: ...


class History(Protocol):
    key: str

    def append(self, *msgs: Message) -> None: ...


@dataclass
class TurnResult:
    text: str
    steps: int
    usage: Usage = field(default_factory=Usage)
    limit_reached: bool = False


async def run_turn(model: Model, tools: ToolRegistry, ctx: ToolContext, session: History,
                   build: Callable[[], Request], *, max_steps: int, on_text: TextSink | None = None,
                   on_tool: ToolSink | None = None) -> TurnResult:
    usage = Usage()
    texts: list[str] = []
    for step in range(1, max_steps + 1):
        completion = await model.complete(build(), on_text, session=session.key)
        usage = usage + completion.usage
        if completion.stop == "context_exceeded":  # the caller compacts the session and tries again
            raise ContextOverflow("The conversation no longer fits the model's context window.")
        session.append(Message("assistant", completion.content or [{"type": "text", "text": ""}]))
        if completion.text:
            texts.append(completion.text)
        if completion.stop == "pause":  # a server-side tool paused the turn; send it back to continue
            continue
        if not completion.tool_calls:
            return TurnResult(_final_text(completion, texts), step, usage)
        if completion.stop == "max_tokens":
            results = [_error_result(call.id, CUT_OFF_CALL) for call in completion.tool_calls]
        else:
            results = await run_tools(tools, completion.tool_calls, ctx, on_tool)
        session.append(Message("user", results))
    note = (f"I stopped after {max_steps} steps, the limit set by agent.max_steps, before finishing. "
            "Say 'continue' and I will go on.")
    return TurnResult("\n\n".join([*texts[-1:], note]), max_steps, usage, limit_reached=True)


async def run_tools(tools: ToolRegistry, calls: list[ToolCall], ctx: ToolContext,
                    on_tool: ToolSink | None = None) -> list[Block]:
    """Run one step's tool calls: together when all are read-only, otherwise one after another."""
    for call in calls:
        if on_tool is not None:
            await on_tool(call)
    if len(calls) > 1 and all(tools.is_read_only(c.name) for c in calls):
        return list(await asyncio.gather(*(tools.run(c, ctx) for c in calls)))
    return [await tools.run(call, ctx) for call in calls]


def _final_text(completion: Completion, texts: list[str]) -> str:
    text = completion.text or (texts[-1] if texts else "")
    if completion.stop == "refusal":
        return text or "The model declined to answer this request."
    if completion.stop == "max_tokens":
        return (text + "\n\n" if text else "") + "(My answer was cut off at the output limit, llm.max_tokens.)"
    return text or "(The model returned an empty answer.)"


def _error_result(call_id: str, message: str) -> Block:
    return {"type": "tool_result", "tool_use_id": call_id, "content": message, "is_error": True}
