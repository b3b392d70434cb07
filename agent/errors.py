"""The exceptions reverie raises, in one tree.

    ReverieError            anything reverie reports to a person; str() says what to fix
    ├── ConfigError         the configuration file or environment is wrong
    ├── ProviderError       the model API failed (after the SDK's own retries)
    │   └── BudgetExceeded  the daily spending cap stops a call before it is made
    ├── ToolError           a tool could not do what the model asked (becomes an is_error result)
    ├── SessionError        a session file could not be read or written
    ├── ChannelError        a chat platform refused or dropped us
    ├── SkillError          a skill could not be installed, removed or shown
    └── MemoryStoreError    MEMORY.md or its git history could not be read or changed

SDK exceptions are translated at the edge with ``raise ... from exc`` so nothing above the
providers and channels needs to know which SDK is in use.
"""

from __future__ import annotations


class ReverieError(Exception):
    """Base class. The message is meant for a person and names the fix."""


class ConfigError(ReverieError):
    """The configuration is missing, malformed, or inconsistent."""


class ProviderError(ReverieError):
    """A model call failed.

    ``retryable``: another attempt may succeed (overload, dropped stream, timeout).
    ``shown``: part of the answer already reached the user, so a retry would repeat it.
    """

    def __init__(self, message: str, *, retryable: bool = False, shown: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.shown = shown


class BudgetExceeded(ProviderError):
    """The daily budget is spent; no call was made."""


class ContextOverflow(ProviderError):
    """The request did not fit the model's context window."""


class ToolError(ReverieError):
    """A tool failed in a way the model can act on (bad path, missing file, refused command)."""


class SessionError(ReverieError):
    """A session file is unusable."""


class ChannelError(ReverieError):
    """A chat platform failed."""


class SkillError(ReverieError):
    """A skill could not be installed, removed or shown (``reverie skill ...``)."""


class MemoryStoreError(ReverieError):
    """The memory store failed: an unknown revision, a fact it cannot hold, or git itself."""
