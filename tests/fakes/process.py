"""Running the real ``reverie`` command from tests and benchmarks."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def reverie_command() -> list[str]:
    """The installed console script next to this interpreter, else the module."""
    script = Path(sys.executable).parent / "reverie"
    return [str(script)] if script.exists() else [sys.executable, "-m", "agent.cli"]


def clean_env(home: Path) -> dict[str, str]:
    """This environment without model keys, base URLs or reverie settings, with HOME moved to ``home``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ANTHROPIC_", "OPENAI_", "REVERIE_")) and not k.endswith("_API_KEY")}
    return env | {"HOME": str(home), "PYTHONUNBUFFERED": "1", "NO_PROXY": "127.0.0.1,localhost"}
