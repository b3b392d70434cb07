"""Compaction: when a session outgrows ``agent.context_tokens``, summarise its oldest turns in one step.

The original lines stay on disk; the session file gains a compaction record, and from then on the
request starts with the summary. Compaction keeps only ~40% of the budget, so it happens in large,
rare steps and the prompt prefix is stable again until the next one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from agent import prompts
from agent.context import TokenCounter, cut_point, estimate_fixed, transcript
from agent.errors import ReverieError
from agent.loop import Model
from agent.types import Message, Request, ToolSpec
from sessions import Session

logger = logging.getLogger(__name__)
KEEP_SHARE = 0.4


@dataclass
class Compactor:
    context_tokens: int
    counter: TokenCounter

    def history_budget(self, system: str, tools: list[ToolSpec]) -> int:
        """Tokens left for the conversation once the system prompt and tool schemas are counted."""
        return max(self.context_tokens - estimate_fixed(system, tools), self.context_tokens // 4)

    def needed(self, session: Session, system: str, tools: list[ToolSpec]) -> bool:
        used = self.counter.active_tokens(session)
        return used > self.history_budget(system, tools)

    async def compact(self, session: Session, model: Model, budget: int) -> str | None:
        """Summarise the oldest turns; returns the notice for the user, or None if nothing could be cut."""
        cut = cut_point(session.messages, int(budget * KEEP_SHARE))
        if cut <= 0:
            return None
        old = session.messages[:cut]
        summary = await self._summarise(session, old, model)
        if summary is None:
            return None  # nothing is cut without a summary to stand for it
        session.compact(summary, cut)
        logger.info("compacted %s: %d messages summarised", session.key, len(old))
        return (f"(To stay within the context budget, I summarised the {len(old)} oldest messages of this "
                "conversation. The full text is still on disk.)")

    async def _summarise(self, session: Session, old: list[Message], model: Model) -> str | None:
        limit = self.context_tokens * 2  # characters: about half the budget, leaving room for the answer
        previous = f"Previous summary:\n{session.summary}\n\n" if session.summary else ""
        text = f"{previous}Conversation to summarise:\n{transcript(old, limit)}"
        request = Request(prompts.load("compact"), [Message.user_text(text)], [], max_tokens=2048)
        try:
            completion = await model.complete(request, None, session=session.key)
        except ReverieError as exc:
            logger.warning("summary for %s failed, so nothing was compacted: %s", session.key, exc)
            return None
        return completion.text.strip() or None
