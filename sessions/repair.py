"""Tool-call pairing repair: make a message list acceptable to every provider.

Providers reject a whole conversation (HTTP 400) when an assistant ``tool_use`` is not answered by a
``tool_result`` in the very next user message, or when a ``tool_result`` answers nothing. Killing the
process mid-tool leaves exactly that behind, so every load runs::

    messages, changes = repair_pairing(messages)

The result is deterministic and depends only on the input, so repairs in the middle of a file are
simply recomputed on each load. An unanswered ``tool_use`` in the *last* message is left alone here:
the store answers it with ``Session.repair_tail``, which appends the answer to the file.
"""

from __future__ import annotations

from typing import Any

from agent.types import Block, Message

INTERRUPTED = "The tool call was interrupted (reverie restarted) and did not finish."


def error_result(tool_use_id: str, reason: str) -> Block:
    """The ``tool_result`` block that stands in for a call that never returned."""
    return {"type": "tool_result", "tool_use_id": tool_use_id, "content": reason, "is_error": True}


def tool_use_ids(msg: Message) -> list[str]:
    """Ids of the message's ``tool_use`` blocks, in order, without duplicates (assistant only)."""
    if msg.role != "assistant":
        return []
    ids = [b.get("id") for b in msg.content if b.get("type") == "tool_use"]
    if not ids:  # the common case, kept cheap for loading
        return []
    return list(dict.fromkeys(i for i in ids if isinstance(i, str)))


def repair_pairing(messages: list[Message]) -> tuple[list[Message], int]:
    """Return a repaired copy of ``messages`` and how many blocks were added or dropped.

    After each assistant message with ``tool_use`` ids, the next message gets a ``tool_result`` for
    every id: missing ones are synthesized (at the front of the next user message if it already
    carries results, else in a new ``kind="repair"`` user message). Results that do not answer the
    assistant message right before them, and repeated answers, are dropped; a user message left
    empty by that is dropped too. Input messages are never mutated.
    """
    out: list[Message] = []
    changes = 0
    pending: list[str] = []  # ids the previous (assistant) message is still waiting for
    for msg in messages:
        answers = [b.get("tool_use_id") for b in msg.content if b.get("type") == "tool_result"]
        if answers == pending if msg.role == "user" else not pending:  # the usual, valid case
            out.append(msg)
            pending = tool_use_ids(msg)
            continue
        if msg.role == "assistant" or not answers:
            out.append(_answer_message(pending, out[-1].time))
            changes += len(pending)
            out.append(msg)
            pending = tool_use_ids(msg)
            continue
        fixed, changed = _fix_results(msg, pending)
        changes += changed
        if fixed is not None:
            out.append(fixed)
        pending = []
    return out, changes


def _answer_message(ids: list[str], when: float) -> Message:
    # Stamped with the assistant message's time so the repair is the same on every load.
    return Message("user", [error_result(i, INTERRUPTED) for i in ids], time=when, kind="repair")


def _fix_results(msg: Message, pending: list[str]) -> tuple[Message | None, int]:
    """Keep the results that answer ``pending`` (first answer per id), add the missing ones."""
    wanted = set(pending)
    answered: set[str] = set()
    content: list[Block] = []
    dropped = 0
    for block in msg.content:
        if block.get("type") == "tool_result":
            tool_use_id: Any = block.get("tool_use_id")
            if not isinstance(tool_use_id, str) or tool_use_id not in wanted or tool_use_id in answered:
                dropped += 1
                continue
            answered.add(tool_use_id)
        content.append(block)
    missing = [error_result(i, INTERRUPTED) for i in pending if i not in answered]
    if not dropped and not missing:
        return msg, 0
    content = missing + content
    if not content:
        return None, dropped
    return Message(msg.role, content, msg.time, msg.sender, msg.msg_id, msg.kind), dropped + len(missing)
