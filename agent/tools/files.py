"""File tools: read, write, edit, list and search files in the workspace.

Every path goes through ``resolve_path``. With ``tools.restrict_to_workspace`` (the default) a path
must stay inside the workspace, symlinks included. Whatever the setting, reverie's own files (the
config file, sessions, logs, cron state, usage records, pairing codes, ``.env`` files and every path
in ``ToolContext.protected``) can be neither read nor written, and listings and searches skip them.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from agent.errors import ToolError
from agent.tools.registry import ToolContext, ToolRegistry

# memory/: MEMORY.md is in the prompt already, and the model changes it only through remember and forget,
# so every change is a commit under its own name and its git history cannot be touched.
PRIVATE_NAMES = frozenset({"config.yaml", "sessions", "logs", "cron", "usage.jsonl", "pairing", "state", "memory"})
SKIP_DIRS = frozenset({".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", ".mypy_cache",
                       ".pytest_cache", ".ruff_cache"})
MAX_READ_BYTES = 10_000_000
MAX_SEARCH_BYTES = 2_000_000
MAX_MATCHES = 200
MAX_ENTRIES = 1000
MAX_LINE_CHARS = 2000
SNIFF_BYTES = 8192


def register(registry: ToolRegistry) -> None:
    registry.register(read_file, read_only=True)
    registry.register(write_file)
    registry.register(edit_file)
    registry.register(list_dir, read_only=True)
    registry.register(search_files, read_only=True)


# --- path rules -----------------------------------------------------------------------------------


def resolve_path(ctx: ToolContext, path: str) -> Path:
    """The real absolute path for ``path``, or ToolError if tools may not touch it.

    Relative paths resolve against the workspace. Symlinks are followed, so a link that points
    outside the workspace (or at a private file) is refused like the target itself.
    """
    if not path or "\x00" in path:
        raise ToolError("Give a non-empty file path (relative to the workspace).")
    try:
        os.fsencode(path)
    except UnicodeEncodeError:  # a lone surrogate, from a "\ud800" escape in the model's JSON
        raise ToolError(f"{path!r} is not a valid file name (it holds an unpaired surrogate).") from None
    try:
        raw = Path(path).expanduser()
    except RuntimeError:  # ~name of a user that does not exist
        raise ToolError(f"Cannot expand {path!r}: no such user. Give a path inside the workspace.") from None
    joined = raw if raw.is_absolute() else ctx.workspace / raw
    lexical, real = Path(os.path.normpath(joined)), _real(joined)
    if real is None:
        raise ToolError(f"{path} is a symbolic link that points to itself (a loop). Use another path.")
    if ctx.config.restrict_to_workspace and not real.is_relative_to(ctx.workspace):
        raise ToolError(f"path escapes the workspace: {path}. Use a path inside {ctx.workspace}.")
    if is_private(ctx, lexical) or is_private(ctx, real):
        raise ToolError(f"{path} is private to reverie (its configuration, sessions, memory, logs and secrets); "
                        "tools may not read or write it. Use another path.")
    return real


def _real(path: Path) -> Path | None:
    """``path.resolve()``, or None for a symlink loop (a RuntimeError before Python 3.13)."""
    try:
        return path.resolve()
    except RuntimeError:
        return None


def is_private(ctx: ToolContext, path: Path) -> bool:
    """True for reverie's own files; ``path`` must be absolute."""
    name = path.name.lower()
    if name == ".env" or name.endswith(".env") or name.startswith(".env."):
        return True
    if any(path.is_relative_to(p) for p in ctx.protected):
        return True
    if path.is_relative_to(ctx.workspace):
        parts = path.relative_to(ctx.workspace).parts
        if parts and parts[0].lower() in PRIVATE_NAMES:
            return True
    return _hard_link_to_private(ctx, path)


def _hard_link_to_private(ctx: ToolContext, path: Path) -> bool:
    """A second name for a protected file is the protected file."""
    try:
        st = path.stat()
    except OSError:
        return False
    if st.st_nlink < 2 or not stat.S_ISREG(st.st_mode):
        return False
    for other in (*ctx.protected, ctx.workspace / "config.yaml", ctx.workspace / "usage.jsonl"):
        with contextlib.suppress(OSError):
            ost = other.stat()
            if (ost.st_dev, ost.st_ino) == (st.st_dev, st.st_ino):
                return True
    return False


def _hidden(ctx: ToolContext, entry: Path) -> bool:
    """Listings and searches skip private entries and, when restricted, links leading outside."""
    real = _real(entry)
    if real is None:
        return True
    if ctx.config.restrict_to_workspace and not real.is_relative_to(ctx.workspace):
        return True
    return is_private(ctx, entry) or is_private(ctx, real)


def _show(ctx: ToolContext, path: Path) -> str:
    return str(path.relative_to(ctx.workspace)) if path.is_relative_to(ctx.workspace) else str(path)


@contextlib.contextmanager
def _os_errors(action: str, path: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise ToolError(f"Cannot {action} {path}: {exc.strerror or exc}.") from exc
    except RecursionError:  # Path.mkdir(parents=True) recurses once per missing folder
        raise ToolError(f"Cannot {action} {path}: it is nested too deeply.") from None
    except UnicodeEncodeError as exc:  # a "\ud800" escape in the model's JSON
        raise ToolError(f"Cannot {action} {path}: the text holds an unpaired surrogate ({exc.object[exc.start]!r}), "
                        "which UTF-8 cannot store. Remove it.") from exc


# --- tools ----------------------------------------------------------------------------------------


async def read_file(ctx: ToolContext, path: str, offset: int = 0, limit: int = 2000) -> str:
    """Read a text file; lines are numbered from 1, and long files are shown in windows.

    Args:
        path: File path, relative to the workspace.
        offset: Number of lines to skip before the window starts.
        limit: Maximum number of lines to show.
    """
    if offset < 0 or limit < 1:
        raise ToolError("offset must be 0 or more and limit 1 or more.")
    return await asyncio.to_thread(_read_window, ctx, path, offset, limit)


def _read_window(ctx: ToolContext, path: str, offset: int, limit: int) -> str:
    lines = _load_text(ctx, path).split("\n")
    if lines[-1] == "":
        lines.pop()
    if not lines:
        return f"{path} is empty."
    if offset >= len(lines):
        raise ToolError(f"offset {offset} is past the end of {path}, which has {len(lines)} lines.")
    budget, shown = ctx.config.max_result_chars - 200, list[str]()
    for number in range(offset, min(offset + limit, len(lines))):
        line = lines[number].rstrip("\r")
        if len(line) > MAX_LINE_CHARS:
            line = f"{line[:MAX_LINE_CHARS]} [... line cut, {len(line)} characters ...]"
        budget -= len(line) + 8
        if budget < 0 and shown:
            break
        shown.append(f"{number + 1:>6}\t{line}")
    end = offset + len(shown)
    if end < len(lines):
        shown.append(f"[lines {offset + 1}-{end} of {len(lines)}; call read_file with offset={end} for more]")
    return "\n".join(shown)


def _load_text(ctx: ToolContext, path: str) -> str:
    target = resolve_path(ctx, path)
    with _os_errors("read", path):
        if not target.exists():
            raise ToolError(f"No such file: {path}. Use list_dir or search_files to find the right path.")
        if target.is_dir():
            raise ToolError(f"{path} is a directory; use list_dir to see what it holds.")
        size = target.stat().st_size
        if size > MAX_READ_BYTES:
            raise ToolError(f"{path} is too large to read ({size} bytes, limit {MAX_READ_BYTES}); "
                            "use search_files to find the part you need.")
        data = target.read_bytes()
    if b"\x00" in data[:SNIFF_BYTES]:
        raise ToolError(f"{path} is a binary file ({size} bytes); read_file only shows text.")
    return data.decode("utf-8", errors="replace")


async def write_file(ctx: ToolContext, path: str, content: str) -> str:
    """Create or overwrite a text file with the given content; missing parent folders are created.

    Args:
        path: File path, relative to the workspace.
        content: The complete new content of the file.
    """
    target = resolve_path(ctx, path)
    with _os_errors("write", path):
        if target.is_dir():
            raise ToolError(f"{path} is a directory; give a file path.")
        await asyncio.to_thread(_atomic_write, target, content)
    lines = content.count("\n") + (0 if content.endswith("\n") or not content else 1)
    return f"Wrote {len(content)} characters ({lines} lines) to {_show(ctx, target)}."


async def edit_file(ctx: ToolContext, path: str, old: str, new: str, replace_all: bool = False) -> str:
    """Replace an exact piece of text in a file; `old` must match exactly once unless replace_all is true.

    Args:
        path: File path, relative to the workspace.
        old: The exact text to replace, whitespace and indentation included.
        new: The replacement text.
        replace_all: Replace every occurrence instead of requiring exactly one.
    """
    if not old:
        raise ToolError("old must not be empty; to create a file use write_file.")
    return await asyncio.to_thread(_edit, ctx, path, old, new, replace_all)


def _edit(ctx: ToolContext, path: str, old: str, new: str, replace_all: bool) -> str:
    target = resolve_path(ctx, path)
    with _os_errors("read", path):
        if not target.is_file():
            raise ToolError(f"No such file: {path}. Use write_file to create it.")
        data = target.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ToolError(f"{path} is not UTF-8 text; edit_file cannot change it safely.") from exc
    count = text.count(old)
    if count == 0:
        raise ToolError(f"The text to replace was not found in {path}. read_file it and copy the text "
                        "exactly, including whitespace and indentation.")
    if count > 1 and not replace_all:
        raise ToolError(f"The text to replace occurs {count} times in {path}. Include more surrounding "
                        "lines to make it unique, or pass replace_all=true to replace every occurrence.")
    with _os_errors("write", path):
        _atomic_write(target, text.replace(old, new))
    return f"Replaced {count} occurrence{'s' if count > 1 else ''} in {_show(ctx, target)}."


def _atomic_write(target: Path, text: str) -> None:
    """Write to a temporary file beside ``target``, then rename it over: readers never see half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else 0o600  # the workspace is private
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


async def list_dir(ctx: ToolContext, path: str = ".") -> str:
    """List a folder: subfolders end with '/', files show their size, symlinks end with '@'.

    Args:
        path: Folder path, relative to the workspace.
    """
    return await asyncio.to_thread(_list, ctx, path)


def _list(ctx: ToolContext, path: str) -> str:
    target = resolve_path(ctx, path)
    with _os_errors("list", path):
        if not target.is_dir():
            raise ToolError(f"{path} is not a folder" + (" (it is a file; use read_file)." if target.exists()
                                                         else "; use list_dir('.') to start from the top."))
        entries = sorted(os.scandir(target), key=lambda e: e.name)
    lines: list[str] = []
    for entry in entries:
        if _hidden(ctx, Path(entry.path)):
            continue
        if entry.is_symlink():
            lines.append(f"{entry.name}@")
        elif entry.is_dir():
            lines.append(f"{entry.name}/")
        else:
            with contextlib.suppress(OSError):
                lines.append(f"{entry.name}  ({entry.stat().st_size} bytes)")
    if not lines:
        return f"{_show(ctx, target)}/ is empty."
    extra = len(lines) - MAX_ENTRIES
    shown = lines[:MAX_ENTRIES] + ([f"[... and {extra} more entries]"] if extra > 0 else [])
    return f"{_show(ctx, target)}/ ({len(lines)} entries)\n" + "\n".join(shown)


async def search_files(ctx: ToolContext, pattern: str, path: str = ".", glob: str | None = None) -> str:
    """Search text files for a regular expression and return matching lines as path:line: text.

    Args:
        pattern: A Python regular expression, e.g. "def \\w+_tool" or "TODO".
        path: Folder (or file) to search, relative to the workspace.
        glob: Only search files whose name matches this pattern, e.g. "*.py" or "notes/*.md".
    """
    try:
        regex = re.compile(pattern)
    except (re.error, OverflowError, RecursionError) as exc:  # a{4294967296}, or thousands of nested groups
        raise ToolError(f"Invalid regular expression {pattern!r}: {exc}.") from exc
    return await asyncio.to_thread(_search, ctx, regex, path, glob)


def _search(ctx: ToolContext, regex: re.Pattern[str], path: str, glob: str | None) -> str:
    root = resolve_path(ctx, path)
    with _os_errors("search", path):
        if not root.exists():
            raise ToolError(f"No such file or folder: {path}.")
    matches: list[str] = []
    for file in _walk_files(ctx, root, glob):
        for number, line in _grep(file, regex):
            matches.append(f"{_show(ctx, file)}:{number}: {line[:300]}")
            if len(matches) >= MAX_MATCHES:
                matches.append(f"[stopped after {MAX_MATCHES} matches; narrow the pattern, path or glob]")
                return "\n".join(matches)
    if not matches:
        return f"No matches for {regex.pattern!r} in {path}."
    return "\n".join(matches)


def _walk_files(ctx: ToolContext, root: Path, glob: str | None) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root):  # does not descend into symlinked folders
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not _hidden(ctx, here / d))
        for name in sorted(filenames):
            file = here / name
            rel = file.relative_to(root).as_posix()
            if glob and not fnmatch.fnmatch(rel if "/" in glob else name, glob):
                continue
            if not _hidden(ctx, file):
                yield file


def _grep(file: Path, regex: re.Pattern[str]) -> Iterator[tuple[int, str]]:
    """Matching lines of a text file; binary, huge and unreadable files yield nothing."""
    try:
        if file.stat().st_size > MAX_SEARCH_BYTES:
            return
        data = file.read_bytes()
    except OSError:
        return
    if b"\x00" in data[:SNIFF_BYTES]:
        return
    for number, line in enumerate(data.decode("utf-8", errors="replace").split("\n"), 1):
        if regex.search(line):
            yield number, line.rstrip("\r")
