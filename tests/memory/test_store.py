"""MemoryStore against a real git binary: commits, hand edits, restore, log, diff, concurrency."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
from git import Repo

from agent.errors import MemoryStoreError, ReverieError
from memory import MemoryStore

DAY = date(2026, 11, 22)


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True, text=True).stdout


def messages(store: MemoryStore) -> list[str]:
    return git(store.folder, "log", "--format=%s").splitlines()


def test_init_creates_own_repo_with_sections(store: MemoryStore) -> None:
    store.ensure()
    assert (store.folder / ".git").is_dir()
    assert messages(store) == ["init"]
    text = store.show()
    for section in ("## About the owner", "## People", "## Projects", "## Preferences"):
        assert section in text
    assert store.facts() == []
    assert stat.S_IMODE(store.folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert git(store.folder, "log", "--format=%an <%ae>|%cn <%ce>").strip() == \
        "reverie <reverie@localhost>|reverie <reverie@localhost>"
    store.ensure()  # idempotent
    assert messages(store) == ["init"]


def test_init_inside_a_parent_repository(tmp_path: Path) -> None:
    workspace = tmp_path / "project"
    workspace.mkdir()
    git(workspace, "init", "-q")
    store = MemoryStore(workspace / "memory")
    store.ensure()
    assert Path(git(store.folder, "rev-parse", "--show-toplevel").strip()).resolve() == store.folder
    assert messages(store) == ["init"]
    assert git(workspace, "log", "--oneline", "--all") == ""  # the parent got no commit


async def test_remember_commits_each_fact(store: MemoryStore) -> None:
    sha = await store.remember("Prefers tea over coffee", "Preferences", "telegram", DAY)
    await store.remember("Sister Ana lives in Porto", "people", "discord", DAY)  # case-insensitive match
    await store.remember("Plays the cello", "Hobbies", "terminal", DAY)  # a new section
    assert messages(store) == ["remember: Plays the cello", "remember: Sister Ana lives in Porto",
                               "remember: Prefers tea over coffee", "init"]
    assert sha == git(store.folder, "rev-parse", "HEAD~2").strip()
    text = store.show()
    assert "## Preferences\n\n- Prefers tea over coffee (2026-11-22, telegram)\n" in text
    assert "## People\n\n- Sister Ana lives in Porto (2026-11-22, discord)\n\n## Projects" in text
    assert text.endswith("## Hobbies\n\n- Plays the cello (2026-11-22, terminal)\n")
    assert store.facts() == ["Sister Ana lives in Porto (2026-11-22, discord)",
                             "Prefers tea over coffee (2026-11-22, telegram)",
                             "Plays the cello (2026-11-22, terminal)"]
    assert git(store.folder, "status", "--porcelain") == ""
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


async def test_duplicate_fact_is_not_added_again(store: MemoryStore) -> None:
    await store.remember("Prefers tea", "Preferences", "telegram", DAY)
    assert await store.remember("Prefers tea", "Preferences", "slack", date(2026, 12, 1)) == ""
    assert len(store.facts()) == 1
    assert len(messages(store)) == 2


async def test_long_fact_is_shortened_in_the_commit_message(store: MemoryStore) -> None:
    fact = "Works on " + "a very long project name " * 10
    await store.remember(fact, "Projects", "terminal", DAY)
    subject = messages(store)[0]
    assert subject.startswith("remember: Works on a very long") and subject.endswith("…")
    assert len(subject) <= len("remember: ") + 60


async def test_multiline_fact_is_refused(store: MemoryStore) -> None:
    with pytest.raises(MemoryStoreError, match="one non-empty line"):
        await store.remember("one\n## Injected", "People", "terminal")


async def test_hand_edit_is_committed_before_a_write_and_kept(store: MemoryStore) -> None:
    await store.remember("Prefers tea", "Preferences", "telegram", DAY)
    edited = store.show().replace("- Prefers tea", "- Prefers green tea")
    store.path.write_text(edited + "\nA line the owner wrote.\n")
    await store.remember("Has a dog called Rex", "About the owner", "telegram", DAY)
    assert messages(store)[:2] == ["remember: Has a dog called Rex", "manual edit"]
    text = store.show()
    assert "- Prefers green tea (2026-11-22, telegram)" in text
    assert "A line the owner wrote." in text
    assert "- Has a dog called Rex" in text
    assert store.commit_manual_edits() == ""  # nothing left over


def test_commit_manual_edits(store: MemoryStore) -> None:
    store.ensure()
    store.path.write_text(store.show() + "- Likes jazz (2026-11-01, by hand)\n")
    sha = store.commit_manual_edits()
    assert sha and messages(store) == ["manual edit", "init"]


async def test_restore_is_a_new_commit(store: MemoryStore) -> None:
    await store.remember("Prefers tea", "Preferences", "telegram", DAY)
    first = git(store.folder, "rev-parse", "HEAD").strip()
    before = store.show()
    await store.remember("Prefers coffee now", "Preferences", "telegram", DAY)
    sha = await store.locked(store.restore, first[:10])
    assert store.show() == before == store.show(first)
    assert messages(store) == [f"restore {first[:7]}", "remember: Prefers coffee now",
                               "remember: Prefers tea", "init"]
    assert sha == git(store.folder, "rev-parse", "HEAD").strip()
    assert store.restore(first) == sha  # already that content: no empty commit
    assert len(messages(store)) == 4
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_unknown_revision_is_a_clear_error(store: MemoryStore) -> None:
    store.ensure()
    for rev in ("nosuchrev", "0" * 40, "--output=/tmp/x"):
        with pytest.raises(MemoryStoreError, match="Unknown memory revision") as info:
            store.restore(rev)
        assert isinstance(info.value, ReverieError)
    with pytest.raises(MemoryStoreError):
        store.diff("HEAD~5")


async def test_log_counts_added_and_removed_lines(store: MemoryStore) -> None:
    await store.remember("Prefers tea", "Preferences", "telegram", DAY)
    store.path.write_text(store.show().replace("- Prefers tea (2026-11-22, telegram)\n", ""))
    store.commit_manual_edits()
    entries = store.log(10)
    assert [(e.message, e.added, e.removed) for e in entries] == [
        ("manual edit", 0, 1), ("remember: Prefers tea", 2, 0), ("init", 12, 0)]  # bullet + blank line
    assert entries[0].sha == git(store.folder, "rev-parse", "HEAD").strip()
    assert entries[0].date.tzinfo is not None
    assert len(store.log(1)) == 1


async def test_diff_from_a_revision_to_now(store: MemoryStore) -> None:
    await store.remember("Prefers tea", "Preferences", "telegram", DAY)
    assert store.diff() == ""
    assert "+- Prefers tea (2026-11-22, telegram)" in store.diff("HEAD~1")
    store.path.write_text(store.show() + "- Typed by hand\n")
    assert "+- Typed by hand" in store.diff()


async def test_concurrent_remembers_all_land(store: MemoryStore) -> None:
    await asyncio.gather(*(store.remember(f"Fact number {i}", "Projects", "telegram", DAY) for i in range(10)))
    assert len(store.facts()) == 10
    assert sorted(m for m in messages(store) if m.startswith("remember: ")) == \
        sorted(f"remember: Fact number {i}" for i in range(10))
    assert len(messages(store)) == 11
    assert not (store.folder / ".git" / "index.lock").exists()
    with Repo(store.folder) as repo:
        assert not repo.is_dirty(untracked_files=True)


def test_no_temp_files_left(store: MemoryStore) -> None:
    store.add_fact("Prefers tea", "Preferences", "terminal", DAY)
    assert sorted(p.name for p in store.folder.iterdir()) == [".git", "MEMORY.md"]
    assert os.access(store.path, os.R_OK)


def test_a_stale_index_lock_from_a_dead_writer_is_cleared(store: MemoryStore) -> None:
    store.ensure()
    lock = store.folder / ".git" / "index.lock"
    lock.write_text("")
    os.utime(lock, (time.time() - 3600, time.time() - 3600))
    assert store.add_fact("Prefers tea", "Preferences", "terminal")
    assert not lock.exists()
    lock.write_text("")  # fresh: perhaps the owner's own git command, so it is left alone
    with pytest.raises(MemoryStoreError, match="another git process"):
        store.add_fact("Prefers mate", "Preferences", "terminal")
    lock.unlink()


def test_writers_in_several_processes_all_land_in_one_linear_history(store: MemoryStore) -> None:
    store.ensure()
    code = ("import sys; from memory import MemoryStore; s = MemoryStore(sys.argv[1]); "
            "[s.add_fact(f'Fact {sys.argv[2]}-{i}', 'Notes', 'terminal') for i in range(5)]")
    root = Path(__file__).resolve().parents[2]
    procs = [subprocess.Popen([sys.executable, "-c", code, str(store.folder), str(n)], cwd=root) for n in range(3)]
    assert [p.wait(60) for p in procs] == [0, 0, 0]
    assert len(store.facts()) == 15 and len(store.log(100)) == 16
    with Repo(store.folder) as repo:
        assert all(len(c.parents) <= 1 for c in repo.iter_commits())
        assert len(list(repo.iter_commits())) == 16  # nothing orphaned
