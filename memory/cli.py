"""``reverie memory show [REV] | log | diff [REV] | restore REV | edit``.

    reverie memory show                 # MEMORY.md as it is now (show REV: as it was then)
    reverie memory log -n 5             # newest first: sha, date, +added -removed, message
    reverie memory diff                 # hand edits not committed yet (diff REV: changes since REV)
    reverie memory restore 3f2a1c9      # the old text as a new commit; history is kept
    reverie memory edit                 # $VISUAL / $EDITOR / nano / vi, then commit as "manual edit"

``edit`` opens a private copy, not MEMORY.md itself: a Dream run or a ``remember`` that writes while
the editor is open is merged with the edit on save (``MemoryStore.apply_edit``). When both touch the
same lines, nothing is committed and the edited copy is kept as ``<workspace>/MEMORY.edit-<stamp>.md``.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agent.chat import load_from_args
from agent.errors import ConfigError, MemoryStoreError
from memory.store import MemoryStore
from skills.skill import escape

RESTORE_USAGE = "Say which revision: reverie memory restore REV. `reverie memory log` lists them."
BAD_REVISION = ("Unknown memory revision", "Revision ")  # how MemoryStore words a REV it cannot use


def run_memory(args: argparse.Namespace) -> int:
    config, _ = load_from_args(args, need_model=False)
    store = MemoryStore(config.workspace_path / "memory")
    rev = (getattr(args, "rev", None) or "").strip() or None
    if args.action in ("log", "edit") and rev:
        raise ConfigError(f"`reverie memory {args.action}` takes no REV (got {escape(rev)!r}).")
    if args.action == "log" and args.limit < 1:
        raise ConfigError(f"`reverie memory log -n N` needs N to be at least 1 (got {args.limit}).")
    if args.action == "edit":
        return edit(store, config.workspace_path)
    try:
        return _with_rev(store, args, rev)
    except MemoryStoreError as exc:
        if rev and str(exc).startswith(BAD_REVISION):  # a REV that does not exist is a usage error
            raise ConfigError(str(exc)) from None
        raise


def _with_rev(store: MemoryStore, args: argparse.Namespace, rev: str | None) -> int:
    if args.action == "show":
        return show(store, rev)
    if args.action == "diff":
        return diff(store, rev)
    if args.action == "restore":
        if not rev:
            raise ConfigError(RESTORE_USAGE)
        return restore(store, rev)
    return log(store, args.limit)


def show(store: MemoryStore, rev: str | None) -> int:
    text = store.show(rev)
    print(escape(text), end="" if text.endswith("\n") or not text else "\n")
    return 0


def log(store: MemoryStore, limit: int) -> int:
    for entry in store.log(limit):
        when = entry.date.astimezone().strftime("%Y-%m-%d %H:%M")
        print(f"{entry.sha[:7]}  {when}  +{entry.added} -{entry.removed}  {escape(entry.message)}")
    return 0


def diff(store: MemoryStore, rev: str | None) -> int:
    text = store.diff(rev)
    if not text.strip():
        print(f"No changes since {escape(rev)}." if rev else "No uncommitted changes to MEMORY.md.")
        return 0
    print(escape(text.rstrip("\n")))
    return 0


def restore(store: MemoryStore, rev: str) -> int:
    store.show(rev)  # an unknown revision fails here, before anything is committed
    store.commit_manual_edits()  # so that "undo" below brings back a hand edit too
    previous = store.log(1)[0].sha
    sha = store.restore(rev)
    if sha == previous:
        print(f"MEMORY.md already matches {short(rev)}; nothing to restore.")
        return 0
    print(f"Restored MEMORY.md to {short(rev)} as a new commit {sha[:7]}; history is kept "
          f"(undo with: reverie memory restore {previous[:7]}).")
    return 0


def edit(store: MemoryStore, workspace: Path) -> int:
    """Edit a private copy of MEMORY.md, then commit it, merged with whatever was written meanwhile."""
    command = editor_command()
    store.commit_manual_edits()  # the owner's earlier hand edit gets its own commit
    base = store.show()
    with tempfile.TemporaryDirectory(prefix="reverie-memory-") as tmp:  # mkdtemp: 0700
        copy = Path(tmp) / "MEMORY.md"
        copy.write_text(base, encoding="utf-8")
        status = _run_editor(command, copy)
        try:
            mine = copy.read_bytes()
        except OSError as exc:  # e.g. the editor deleted it
            raise MemoryStoreError(f"Could not read the edited copy ({exc.strerror or exc}); nothing was committed.") \
                from None
    if status != 0:
        kept = f" Your changes are kept in {keep(workspace, mine)}." if mine != base.encode() else ""
        print(f"reverie: the editor exited with status {status}; nothing was committed.{kept}", file=sys.stderr)
        return 1
    try:
        sha = store.apply_edit(base, mine.decode("utf-8"))
    except (MemoryStoreError, UnicodeDecodeError) as exc:
        reason = str(exc) if isinstance(exc, MemoryStoreError) else f"The edited file is not UTF-8 ({exc})."
        print(f"reverie: {reason} Nothing was committed; your edited copy is kept in {keep(workspace, mine)}. "
              "Bring its changes over with `reverie memory edit`.", file=sys.stderr)
        return 1
    print(f"Saved your edit as commit {sha[:7]}." if sha else "No changes.")
    return 0


def _run_editor(command: list[str], path: Path) -> int:
    try:
        return subprocess.run([*command, str(path)], check=False).returncode
    except OSError as exc:
        raise ConfigError(f"Could not start the editor {escape(command[0])!r} ({exc}). "
                          "Set $EDITOR to a command that opens a file, e.g. EDITOR=nano.") from None


def keep(workspace: Path, data: bytes) -> Path:
    """Write ``data`` to ``<workspace>/MEMORY.edit-<stamp>.md`` (``-2``, ``-3``, ... when taken), mode 0600."""
    stamp, n = time.strftime("%Y%m%dT%H%M%S"), 1
    while True:
        path = workspace / f"MEMORY.edit-{stamp}{f'-{n}' if n > 1 else ''}.md"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            n += 1
            continue
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return path


def editor_command() -> list[str]:
    """``$VISUAL``, else ``$EDITOR`` (split like a shell would), else nano or vi on a terminal."""
    for var in ("VISUAL", "EDITOR"):
        value = os.environ.get(var, "").strip()
        if not value:
            continue
        try:
            command = shlex.split(value)
        except ValueError as exc:
            raise ConfigError(f"${var} is not a valid command line ({exc}); set $EDITOR, e.g. EDITOR=nano.") from None
        if command:
            return command
    if not sys.stdin.isatty():
        raise ConfigError("No editor to open: stdin is not a terminal and neither $VISUAL nor $EDITOR is set. "
                          "Set $EDITOR, e.g. EDITOR=nano.")
    for name in ("nano", "vi"):
        found = shutil.which(name)
        if found:
            return [found]
    raise ConfigError("No editor found (neither nano nor vi is installed). Set $EDITOR, e.g. EDITOR=nano.")


def short(rev: str) -> str:
    """A full or long sha cut to 7 characters; anything else (HEAD~2, a tag) as given."""
    return rev[:7] if re.fullmatch(r"[0-9a-fA-F]{8,40}", rev) else escape(rev)


def run_dream(args: argparse.Namespace) -> int:
    """``reverie dream``: one run now, without the daemon; refused while another process is running one."""
    import asyncio

    from agent.logs import setup_logging
    from agent.providers import build_provider
    from agent.usage import UsageLog
    from channels.access import PairingStore
    from memory.setup import build_dream

    config, _ = load_from_args(args)
    workspace = config.workspace_path
    setup_logging(workspace, config.secrets(), level=config.logging.level, max_bytes=config.logging.max_bytes,
                  backups=config.logging.backups)
    usage = UsageLog(workspace / "usage.jsonl", config.llm)
    store = MemoryStore(workspace / "memory")
    dream = build_dream(config, store, build_provider(config.llm, usage), usage, PairingStore(workspace / "pairing"))
    result = asyncio.run(dream.run())
    if result.outcome == "committed":
        print(escape(store.diff(result.before)).rstrip("\n"))
    print(result.summary())
    return 0 if result.outcome in ("committed", "unchanged", "nothing") else 1
