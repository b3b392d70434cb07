"""Logging: a rotating file under ``<workspace>/logs/``, warnings on stderr, every secret masked.

The masking happens in the formatter, after the message, its arguments and any traceback are rendered,
so no path around it exists. httpx and httpcore are held at WARNING because they log request URLs,
and the Telegram token is part of those URLs.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
from collections.abc import Iterable
from pathlib import Path

_NOISY = ("httpx", "httpx2", "httpcore", "httpcore2", "anthropic", "openai", "asyncio", "urllib3")
# Shapes of well-known credentials, masked even when they are not in the config (pasted into a chat).
_PATTERNS = re.compile(r"(sk-ant-[A-Za-z0-9_\-]{8,}|sk-[A-Za-z0-9_\-]{20,}|xox[abpr]-[A-Za-z0-9\-]{8,}"
                       r"|xapp-[A-Za-z0-9\-]{8,}|\b\d{6,12}:[A-Za-z0-9_\-]{30,})")


class Masker:
    """Replaces each known secret (and anything shaped like an API key) with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        found = {s for s in secrets if s and len(s) >= 6} | set(self.secrets)
        self.secrets = sorted(found, key=len, reverse=True)  # longest first: a key inside a longer one

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return _PATTERNS.sub("***", text)


MASK = Masker()


class MaskingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return MASK(super().format(record))


def env_secrets() -> set[str]:
    """Values of environment variables that look like credentials (``*_API_KEY``, ``*_TOKEN``, ...)."""
    marks = ("KEY", "TOKEN", "SECRET", "PASSWORD")
    return {v for k, v in os.environ.items() if any(m in k.upper() for m in marks) and len(v) >= 6}


def setup_logging(workspace: Path | None, secrets: Iterable[str], *, level: str = "INFO",
                  stderr_level: int = logging.WARNING, max_bytes: int = 5_000_000, backups: int = 3) -> None:
    MASK.add(secrets)
    MASK.add(env_secrets())
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(level)
    stderr = logging.StreamHandler()
    stderr.setLevel(stderr_level)
    stderr.setFormatter(MaskingFormatter("reverie: %(levelname)s %(message)s"))
    root.addHandler(stderr)
    if workspace is not None:
        logs = workspace / "logs"
        logs.mkdir(parents=True, exist_ok=True, mode=0o700)
        file = logging.handlers.RotatingFileHandler(logs / "reverie.log", maxBytes=max_bytes,
                                                    backupCount=backups, encoding="utf-8")
        file.setFormatter(MaskingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(file)
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
