"""Dream and the git-versioned MEMORY.md (see the memory issue).

Others may import ``MemoryStore`` (and ``LogEntry``) from here, and ``memory.tool.register`` to
add the ``remember`` tool. ``memory.notes`` (the file format) is internal.
"""

from memory.store import LogEntry, MemoryStore

__all__ = ["LogEntry", "MemoryStore"]
