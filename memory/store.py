"""MEMORY.md in its own git repository: every change is a commit, nothing is ever rewritten.

    store = MemoryStore(workspace / "memory")
    sha = await store.remember("Prefers tea over coffee", "Preferences", source="telegram")
    store.log(10)                     # [LogEntry(sha, date, "remember: Prefers tea over coffee", 1, 0), ...]
    store.diff("HEAD~1")              # unified diff from that revision to the file as it is now
    await store.locked(store.restore, "3f2a1c9")   # the old content as a new commit "restore 3f2a1c9"
    store.prompt_text(12_000)         # the notes block for the system prompt ("" without facts)

The sync methods block (GitPython shells out to git), so async code uses ``remember`` or
``locked(fn, ...)``: one asyncio.Lock serialises every write and the work runs in a thread.
Each operation opens its own ``Repo`` and closes it, because GitPython keeps ``git cat-file``
processes alive otherwise (LIBRARIES.md section 7). The owner may edit MEMORY.md by hand at any
time: before any write, such an edit is committed as ``manual edit`` so the owner's version is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, ParamSpec, TypeVar

from agent.errors import MemoryStoreError
from memory import notes

if TYPE_CHECKING:  # GitPython is imported on first git use: the prompt notes need no git
    from git import Commit, Repo

logger = logging.getLogger(__name__)
NAME = "MEMORY.md"
_HERE = Path(__file__).parent
P = ParamSpec("P")
T = TypeVar("T")


class LogEntry(NamedTuple):
    sha: str
    date: datetime
    message: str
    added: int  # lines of MEMORY.md added by this commit
    removed: int


class MemoryStore:
    """The git-versioned MEMORY.md in ``folder`` (usually ``<workspace>/memory``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder).expanduser().resolve()
        self.path = self.folder / NAME
        self._lock = asyncio.Lock()  # async writers queue here instead of filling the thread pool
        self._thread_lock = threading.RLock()  # sync writers from several threads
        self._cache: tuple[tuple[int, int, int], str] | None = None

    # --- async façade -----------------------------------------------------------------------------

    async def remember(self, fact: str, section: str, source: str, day: date | None = None) -> str:
        """Append one fact and commit it; the new commit's sha, or "" when the fact was already there."""
        return await self.locked(self.add_fact, fact, section, source, day)

    async def forget(self, words: str) -> str:
        """Remove one fact as a commit ``forget: ...``; the bullet removed."""
        return await self.locked(self.forget_fact, words)

    async def locked(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a sync write (``restore``, ``commit_manual_edits``, ...) in a thread, one at a time."""
        async with self._lock:
            return await asyncio.to_thread(fn, *args, **kwargs)

    # --- writes -------------------------------------------------------------------------------------

    def ensure(self) -> None:
        """Create the folder (0700) and its repository with the initial MEMORY.md, once."""
        with self._thread_lock:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.folder, 0o700)
            if (self.folder / ".git").exists():
                return
            # Repo.init on this very folder: a workspace inside another repository gets its own.
            with _git().Repo.init(self.folder) as repo:
                if not self.path.exists():
                    self._write((_HERE / "template.md").read_text(encoding="utf-8"))
                self._commit(repo, "init")

    def add_fact(self, fact: str, section: str, source: str, day: date | None = None) -> str:
        """Sync ``remember``: the new commit's sha, or "" when this exact fact is already recorded."""
        fact, source = _one_line(fact, "fact"), _one_line(source, "source")
        section = _one_line(section.strip().lstrip("# "), "section")
        with self._writing() as repo:
            self._commit_edits(repo)
            text = self.show()
            if notes.has_fact(text, fact):
                return ""
            self._write_checked(notes.add_fact(text, fact, section, day or date.today(), source), text)
            return self._commit(repo, f"remember: {_shorten(fact, 60)}")

    def forget_fact(self, words: str) -> str:
        """Remove the one bullet matching ``words`` (see ``notes.matching``) as a commit; the bullet removed."""
        words = _one_line(words, "fact")
        with self._writing() as repo:
            self._commit_edits(repo)
            text = self.show()
            found = notes.matching(text, words)
            if not found:
                raise MemoryStoreError(f"No remembered fact matches {_shorten(words, 80)!r}. Use words from the "
                                       "fact as it appears in your notes.")
            if len(found) > 1:
                listed = "; ".join(_shorten(item, 80) for item in found[:5])
                raise MemoryStoreError(f"{len(found)} facts match {_shorten(words, 80)!r}: {listed}. "
                                       "Say which one, with more of its words.")
            self._write_checked(notes.remove_fact(text, found[0]), text)
            self._commit(repo, f"forget: {_shorten(notes.fact_only(found[0]), 60)}")
            return found[0]

    def commit_manual_edits(self) -> str:
        """Commit a hand edit of MEMORY.md as ``manual edit``; its sha, or "" when there was none."""
        with self._writing() as repo:
            return self._commit_edits(repo)

    def restore(self, rev: str) -> str:
        """Make MEMORY.md what it was at ``rev``, as a new commit ``restore <short sha>``; its sha.

        Nothing is committed (and HEAD's sha returned) when the content is already the same.
        """
        with self._writing() as repo:
            old = _resolve(repo, rev)
            try:
                content = (old.tree / NAME).data_stream.read().decode("utf-8")
            except KeyError:
                raise MemoryStoreError(f"Revision {rev} has no {NAME}; pick one from the memory log.") from None
            self._commit_edits(repo)
            if content == self.show():
                return repo.head.commit.hexsha
            self._write(content)
            return self._commit(repo, f"restore {old.hexsha[:7]}")

    def snapshot(self) -> tuple[str, str]:
        """What a Dream run starts from: any hand edit committed first, then MEMORY.md and HEAD's sha."""
        with self._writing() as repo:
            self._commit_edits(repo)
            return self.show(), repo.head.commit.hexsha

    def replace(self, text: str, message: str, expect: tuple[str, str] | None = None) -> str | None:
        """Write ``text`` as MEMORY.md and commit it as ``message``, even when nothing changed; the sha.

        With ``expect=(text, head)``: None, and nothing written, when MEMORY.md or HEAD is no longer that.
        """
        with self._writing() as repo:
            if expect is not None and (repo.head.commit.hexsha != expect[1] or self.show() != expect[0]):
                return None
            try:
                self._write(text, expect=expect[0] if expect else None)
            except _Changed:
                return None
            return self._commit(repo, message)

    def head(self) -> str:
        with self._repo() as repo:
            return repo.head.commit.hexsha

    def versions_since(self, rev: str) -> list[tuple[str, str]]:
        """``(message, MEMORY.md)`` of the commits after ``rev`` up to HEAD, oldest first."""
        with self._repo() as repo:
            commits = list(repo.iter_commits(f"{_resolve(repo, rev).hexsha}..HEAD"))
            return [(str(c.message).strip(), _text_at(c)) for c in reversed(commits)]

    def apply_edit(self, base: str, mine: str) -> str:
        """Commit ``mine``, an edited copy of ``base``, as ``manual edit``; its sha ("" when unchanged).

        A change made to MEMORY.md meanwhile (Dream, remember) is merged in with ``git merge-file``;
        MemoryStoreError when the two changes touch the same lines.
        """
        with self._writing() as repo:
            self._commit_edits(repo)
            current = self.show()
            if mine == base:
                return ""
            text = mine if current == base else _merge(repo, base, mine, current)
            self._write(text)
            return self._commit(repo, "manual edit")

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Repo]:
        """One writer at a time: threads of this process, and other processes (an flock in .git)."""
        with self._thread_lock:
            self.ensure()
            with open(self.folder / ".git" / "reverie-write.lock", "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                _clear_stale_lock(self.folder / ".git" / "index.lock")
                with _git().Repo(self.folder) as repo:
                    yield repo

    def _commit_edits(self, repo: Repo) -> str:
        if not repo.git.status("--porcelain", "--", NAME):
            return ""
        return self._commit(repo, "manual edit")

    def _commit(self, repo: Repo, message: str) -> str:
        from git.exc import GitCommandError

        identity = _git().Actor("reverie", "reverie@localhost")
        # git add as a subprocess with cwd: index.add() would os.chdir the whole daemon.
        try:
            repo.git.add("--all", "--", NAME)
            commit = repo.index.commit(message, author=identity, committer=identity, skip_hooks=True)
            _owner_only(repo, commit)
        except (GitCommandError, OSError) as exc:  # e.g. another process holds .git/index.lock
            raise MemoryStoreError(f"Could not commit {self.path} ({exc}). "
                                   "If another git process is using it, try again.") from exc
        return commit.hexsha

    def _write(self, text: str, expect: str | None = None) -> None:
        """Replace MEMORY.md atomically; with ``expect``, _Changed if the file stopped being that meanwhile
        (checked last, just before the rename, so an editor's save is not overwritten)."""
        fd, tmp = tempfile.mkstemp(prefix=f".{NAME}.", suffix=".tmp", dir=self.folder)  # mode 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            if expect is not None and self.show() != expect:
                raise _Changed
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _write_checked(self, text: str, expect: str) -> None:
        try:
            self._write(text, expect=expect)
        except _Changed:
            raise MemoryStoreError(f"{self.path} was saved by someone else at this very moment; nothing was "
                                   "written over it. Try again.") from None

    # --- reads --------------------------------------------------------------------------------------

    def show(self, rev: str | None = None) -> str:
        """MEMORY.md as it is now (``rev=None``) or at a revision."""
        if rev is None:
            self.ensure()
            return _decode(self.path.read_bytes(), self.path) if self.path.exists() else ""
        with self._repo() as repo:
            try:
                return (_resolve(repo, rev).tree / NAME).data_stream.read().decode("utf-8")
            except KeyError:
                raise MemoryStoreError(f"Revision {rev} has no {NAME}.") from None

    def log(self, limit: int = 20) -> list[LogEntry]:
        """The newest ``limit`` commits that touched MEMORY.md, with lines added and removed."""
        with self._repo() as repo:
            out = repo.git.log(f"-n{max(limit, 1)}", "--numstat", "--format=%x1e%H%x1f%aI%x1f%s", "--", NAME)
        return [_entry(record) for record in out.split("\x1e") if record.strip()]

    def diff(self, rev: str | None = None) -> str:
        """Unified diff of MEMORY.md from ``rev`` (default HEAD) to the file as it is now."""
        with self._repo() as repo:
            sha = _resolve(repo, rev or "HEAD").hexsha
            return str(repo.git.diff(sha, "--", NAME))

    def facts(self, text: str | None = None) -> list[str]:
        """The bullets of ``text`` (default: the current MEMORY.md)."""
        return notes.facts(self.show() if text is None else text)

    def prompt_text(self, max_chars: int) -> str:
        """The notes block for the system prompt; the same string object while MEMORY.md is unchanged."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return ""
        key = (stat.st_mtime_ns, stat.st_size, max_chars)
        if self._cache is None or self._cache[0] != key:
            text = self.path.read_text(encoding="utf-8", errors="replace")  # a bad byte must not break turns
            preface = (_HERE / "preface.md").read_text(encoding="utf-8")
            self._cache = (key, notes.notes_block(text, preface, max_chars))
        return self._cache[1]

    def _repo(self) -> Repo:
        self.ensure()
        return _git().Repo(self.folder)


def _clear_stale_lock(path: Path) -> None:
    """Remove git's index.lock left by a writer killed mid-commit. Every reverie writer holds the flock,
    so an old one belongs to a dead process (a minute's grace for a git command the owner is running)."""
    try:
        if time.time() - path.stat().st_mtime > 60:
            path.unlink()
            logger.warning("Removed %s, left behind by a process that died while committing", path)
    except FileNotFoundError:
        pass


class _Changed(Exception):
    """MEMORY.md changed between reading it and writing the new version."""


def _decode(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MemoryStoreError(f"{path} is not UTF-8 text (byte {exc.start} cannot be read). Open it in your "
                               "editor and save it as UTF-8; nothing was changed.") from None


def _merge(repo: Repo, base: str, mine: str, theirs: str) -> str:
    """``git merge-file``: ``mine`` and ``theirs``, both edits of ``base``, combined; MemoryStoreError on conflict."""
    from git.exc import GitCommandError

    with tempfile.TemporaryDirectory(prefix="reverie-merge-") as tmp:
        paths = [Path(tmp) / name for name in ("yours", "base", "current")]
        for path, text in zip(paths, (mine, base, theirs), strict=True):
            path.write_text(text, encoding="utf-8")
        try:
            return str(repo.git.merge_file("-p", *map(str, paths), strip_newline_and_stdout=False))
        except GitCommandError:
            raise MemoryStoreError("MEMORY.md was changed while you were editing it (by Dream or remember), and "
                                   "both changes touch the same lines.") from None


def _git() -> Any:
    """The GitPython module; a clear error when the git program is missing (GitPython needs it)."""
    try:
        import git
    except ImportError as exc:
        raise MemoryStoreError(f"Memory needs the git program, which was not found ({str(exc).splitlines()[0]}). "
                               "Install git (e.g. apt install git, or brew install git) and try again.") from None
    return git


def _resolve(repo: Repo, rev: str) -> Commit:
    from git.exc import GitCommandError
    from gitdb.exc import ODBError

    try:
        commit = repo.commit(rev)
        commit.tree  # noqa: B018 -- a full-length sha resolves lazily; make a missing object fail here
        return commit
    except (ODBError, ValueError, GitCommandError) as exc:
        raise MemoryStoreError(f"Unknown memory revision {rev!r}; use a sha from the memory log.") from exc


def _text_at(commit: Commit) -> str:
    try:
        return str((commit.tree / NAME).data_stream.read().decode("utf-8"))
    except KeyError:
        return ""


def _entry(record: str) -> LogEntry:
    header, *stats = record.strip("\n").split("\n")
    sha, when, message = header.split("\x1f", 2)
    added = removed = 0
    for line in stats:
        parts = line.split("\t")
        if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit():
            added, removed = added + int(parts[0]), removed + int(parts[1])
    return LogEntry(sha, datetime.fromisoformat(when), message, added, removed)


def _one_line(value: str, what: str) -> str:
    value = value.strip()
    if not value or "\n" in value or "\r" in value:
        raise MemoryStoreError(f"A memory {what} must be one non-empty line; got {_shorten(value, 40)!r}.")
    return value


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _owner_only(repo: Repo, commit: Commit) -> None:
    """GitPython (gitdb) writes objects 0444 and refs 0644 whatever the umask: make this commit's files 0400/0600."""
    git_dir = Path(repo.git_dir)
    shas = [commit.hexsha, commit.tree.hexsha, *(blob.hexsha for blob in commit.tree.blobs)]  # MEMORY.md
    files = [git_dir / "objects" / sha[:2] / sha[2:] for sha in shas]
    files += [git_dir / "HEAD", git_dir / repo.head.reference.path]
    for path in files:
        with contextlib.suppress(FileNotFoundError):  # packed, or not a loose object
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                os.chmod(path, mode & 0o700)
