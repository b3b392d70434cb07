"""Conversation history: one append-only JSONL file per session key, repaired on load.

Other packages may import: ``SessionStore`` and ``Session`` (from ``sessions`` or ``sessions.store``).
The rest (``sessions.reader``, ``sessions.repair``, ``sessions.session``) is internal.
"""

from sessions.session import Session
from sessions.store import SessionStore

__all__ = ["Session", "SessionStore"]
