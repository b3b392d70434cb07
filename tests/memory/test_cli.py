"""``reverie memory show | log | diff | restore | edit`` through ``agent.cli.main`` with a temporary config."""

from __future__ import annotations

import io
import re
import shlex
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
import yaml

from agent.cli import main
from memory import MemoryStore

DAY = date(2026, 11, 22)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config file whose workspace is ``tmp_path/workspace`` (the ``store`` fixture's folder)."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"workspace": str(tmp_path / "workspace")}))
    return path


@pytest.fixture(autouse=True)
def no_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nobody at the keyboard, and no editor configured unless a test sets one."""
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.delenv("EDITOR", raising=False)


def memory(config: Path, *args: str) -> int:
    return main(["memory", *args, "--config", str(config)])


def messages(store: MemoryStore) -> list[str]:
    return [entry.message for entry in store.log(100)]


def editor(tmp_path: Path, body: str) -> str:
    """An $EDITOR value running ``body`` (Python, the file's path in ``path``) via this interpreter."""
    script = tmp_path / "editor.py"
    script.write_text(f"import sys\npath = sys.argv[-1]\n{body}\n")
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"


def test_show_prints_the_template_on_a_fresh_workspace(config: Path, store: MemoryStore,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert memory(config, "show") == 0
    out = capsys.readouterr().out
    assert out.startswith("# Memory\n") and "## Preferences\n" in out
    assert out == store.path.read_text()


def test_show_at_a_revision(config: Path, store: MemoryStore, capsys: pytest.CaptureFixture[str]) -> None:
    store.ensure()
    init = store.log(1)[0].sha
    store.add_fact("Prefers tea over coffee", "Preferences", "telegram", DAY)
    assert memory(config, "show") == 0
    assert "Prefers tea over coffee" in capsys.readouterr().out
    assert memory(config, "show", init) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Memory\n") and "tea" not in out


def test_log_lists_commits_newest_first(config: Path, store: MemoryStore,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert memory(config, "log") == 0
    only = capsys.readouterr().out.splitlines()
    assert len(only) == 1 and only[0].endswith("  init")
    store.add_fact("Prefers tea over coffee", "Preferences", "telegram", DAY)
    store.add_fact("Likes long walks", "Preferences", "cli", DAY)
    assert memory(config, "log") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    pattern = r"[0-9a-f]{7}  \d{4}-\d\d-\d\d \d\d:\d\d  "
    assert re.fullmatch(pattern + r"\+1 -0  remember: Likes long walks", lines[0])
    # the first fact of an empty section also adds the blank line under its heading
    assert re.fullmatch(pattern + r"\+2 -0  remember: Prefers tea over coffee", lines[1])
    assert lines[0][:7] == store.log(1)[0].sha[:7]
    assert memory(config, "log", "-n", "1") == 0
    assert capsys.readouterr().out.splitlines() == lines[:1]


def test_diff_without_and_with_hand_edits(config: Path, store: MemoryStore,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    store.ensure()
    assert memory(config, "diff") == 0
    assert capsys.readouterr().out == "No uncommitted changes to MEMORY.md.\n"
    assert memory(config, "diff", "HEAD") == 0
    assert capsys.readouterr().out == "No changes since HEAD.\n"
    store.add_fact("Prefers tea over coffee", "Preferences", "telegram", DAY)
    assert memory(config, "diff", "HEAD~1") == 0
    assert "+- Prefers tea over coffee" in capsys.readouterr().out
    store.path.write_text(store.path.read_text() + "- Hand-written fact\n")
    assert memory(config, "diff") == 0
    out = capsys.readouterr().out
    assert "+- Hand-written fact" in out and "+- Prefers tea" not in out
    assert messages(store)[0] == "remember: Prefers tea over coffee"  # diff commits nothing


def test_restore_round_trip(config: Path, store: MemoryStore, capsys: pytest.CaptureFixture[str]) -> None:
    store.add_fact("Prefers tea over coffee", "Preferences", "telegram", DAY)
    old_sha, old_text = store.log(1)[0].sha, store.show()
    store.add_fact("Sister is called Ana", "People", "cli", DAY)
    head = store.log(1)[0].sha
    assert memory(config, "restore", old_sha) == 0
    new = store.log(1)[0].sha
    assert capsys.readouterr().out == (
        f"Restored MEMORY.md to {old_sha[:7]} as a new commit {new[:7]}; history is kept "
        f"(undo with: reverie memory restore {head[:7]}).\n")
    assert store.show() == old_text
    assert messages(store) == [f"restore {old_sha[:7]}", "remember: Sister is called Ana",
                               "remember: Prefers tea over coffee", "init"]
    assert memory(config, "restore", old_sha[:7]) == 0
    assert capsys.readouterr().out == f"MEMORY.md already matches {old_sha[:7]}; nothing to restore.\n"
    assert len(messages(store)) == 4
    assert memory(config, "restore", head[:7]) == 0  # the undo brings the later fact back
    assert "Sister is called Ana" in store.show()


def test_restore_commits_a_hand_edit_first_so_undo_keeps_it(config: Path, store: MemoryStore,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    store.ensure()
    init = store.log(1)[0].sha
    store.path.write_text(store.path.read_text() + "- Hand-written fact\n")
    assert memory(config, "restore", init) == 0
    edit_sha = store.log(2)[1].sha
    assert messages(store)[:2] == [f"restore {init[:7]}", "manual edit"]
    assert f"(undo with: reverie memory restore {edit_sha[:7]})" in capsys.readouterr().out
    assert "Hand-written fact" not in store.show()


def test_restore_needs_a_revision(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert memory(config, "restore") == 2
    err = capsys.readouterr().err
    assert "reverie memory restore REV" in err and "reverie memory log" in err


@pytest.mark.parametrize("action", ["show", "diff", "restore"])
def test_unknown_revision_is_a_usage_error(config: Path, store: MemoryStore, action: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    store.ensure()
    assert memory(config, action, "deadbeef") == 2
    captured = capsys.readouterr()
    assert captured.err == "reverie: Unknown memory revision 'deadbeef'; use a sha from the memory log.\n"
    assert "Traceback" not in captured.out + captured.err
    assert messages(store) == ["init"]


def test_edit_with_a_script_editor_commits_a_manual_edit(config: Path, store: MemoryStore, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    store.ensure()
    store.path.write_text(store.path.read_text() + "- Earlier hand edit\n")  # committed before the editor runs
    monkeypatch.setenv("EDITOR", editor(tmp_path, "open(path, 'a').write('- Likes green tea\\n')"))
    assert memory(config, "edit") == 0
    assert capsys.readouterr().out == f"Saved your edit as commit {store.log(1)[0].sha[:7]}.\n"
    assert messages(store) == ["manual edit", "manual edit", "init"]
    assert store.show().endswith("- Earlier hand edit\n- Likes green tea\n")
    assert "Likes green tea" in store.show("HEAD") and "green tea" not in store.show("HEAD~1")


def test_visual_wins_and_an_unchanged_file_is_not_committed(config: Path, store: MemoryStore, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("VISUAL", editor(tmp_path, "open(path).read()"))
    monkeypatch.setenv("EDITOR", "false")
    assert memory(config, "edit") == 0
    assert capsys.readouterr().out == "No changes.\n"
    assert messages(store) == ["init"]


def test_a_failing_editor_commits_nothing(config: Path, store: MemoryStore, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("EDITOR", editor(tmp_path, "open(path, 'a').write('- Half done\\n')\nsys.exit(1)"))
    assert memory(config, "edit") == 1
    err = capsys.readouterr().err
    assert "editor exited with status 1; nothing was committed" in err
    assert messages(store) == ["init"]
    assert "Half done" not in store.show()  # MEMORY.md itself was never opened
    assert subprocess.run(["git", "status", "--porcelain"], cwd=store.folder, capture_output=True,
                          text=True, check=True).stdout.strip() == ""
    [kept] = (tmp_path / "workspace").glob("MEMORY.edit-*.md")  # the half-done edit is not lost
    assert str(kept) in err and kept.read_text().endswith("- Half done\n")
    assert kept.stat().st_mode & 0o777 == 0o600


def test_edit_opens_a_private_copy(config: Path, store: MemoryStore, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    seen = tmp_path / "seen.txt"
    body = (f"import os, stat\nopen({str(seen)!r}, 'w').write("
            "f'{os.path.basename(path)} {stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode):o} {path}')")
    monkeypatch.setenv("EDITOR", editor(tmp_path, body))
    assert memory(config, "edit") == 0
    name, mode, path = seen.read_text().split(" ", 2)
    assert (name, mode) == ("MEMORY.md", "700") and Path(path) != store.path
    assert not Path(path).exists()  # the temporary folder is gone


def test_a_change_made_while_editing_is_merged(config: Path, store: MemoryStore, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    store.add_fact("Prefers tea over coffee", "Preferences", "telegram", DAY)
    folder = str(store.folder)
    body = ("from datetime import date\nfrom memory import MemoryStore\n"  # Dream or remember, meanwhile
            f"MemoryStore(__import__('pathlib').Path({folder!r})).add_fact("
            "'Sister is called Ana', 'People', 'telegram', date(2026, 11, 22))\n"
            "text = open(path).read()\n"
            "open(path, 'w').write(text.replace('Prefers tea over coffee', 'Prefers green tea over coffee'))")
    monkeypatch.setenv("EDITOR", editor(tmp_path, body))
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parents[2]))
    assert memory(config, "edit") == 0
    assert capsys.readouterr().out == f"Saved your edit as commit {store.log(1)[0].sha[:7]}.\n"
    text = store.show()
    assert "Prefers green tea over coffee" in text and "Sister is called Ana" in text  # both kept
    assert messages(store)[:2] == ["manual edit", "remember: Sister is called Ana"]
    assert not list((tmp_path / "workspace").glob("MEMORY.edit-*"))


def test_a_conflicting_change_keeps_the_edited_copy(config: Path, store: MemoryStore, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    store.ensure()
    body = (f"real = {str(store.path)!r}\n"  # someone rewrites the same line the owner edits
            "theirs, mine = open(real).read(), open(path).read()\n"
            "open(real, 'w').write(theirs.replace('# Memory', '# Memory (theirs)'))\n"
            "open(path, 'w').write(mine.replace('# Memory', '# Memory (mine)'))")
    monkeypatch.setenv("EDITOR", editor(tmp_path, body))
    assert memory(config, "edit") == 1
    err = capsys.readouterr().err
    [kept] = (tmp_path / "workspace").glob("MEMORY.edit-*.md")
    assert re.fullmatch(r"MEMORY\.edit-\d{8}T\d{6}\.md", kept.name)
    assert "changed while you were editing it" in err and str(kept) in err and "Nothing was committed" in err
    assert kept.read_text().startswith("# Memory (mine)\n")
    assert store.show().startswith("# Memory (theirs)\n")
    assert "(mine)" not in store.show("HEAD")


def test_no_editor_is_a_config_error(config: Path, store: MemoryStore, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert memory(config, "edit") == 2
    assert "$EDITOR" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)  # a terminal, but neither nano nor vi on PATH
    monkeypatch.setattr("memory.cli.shutil.which", lambda name: None)
    assert memory(config, "edit") == 2
    assert "No editor found" in capsys.readouterr().err
    monkeypatch.setenv("EDITOR", str(tmp_path / "missing-editor"))
    assert memory(config, "edit") == 2
    assert "Could not start the editor" in capsys.readouterr().err
    assert messages(store) == ["init"]


def test_log_and_edit_take_no_revision(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert memory(config, "log", "HEAD") == 2
    assert "takes no REV" in capsys.readouterr().err


@pytest.mark.parametrize("limit", ["0", "-3"])
def test_log_needs_at_least_one(config: Path, limit: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert memory(config, "log", "-n", limit) == 2
    assert "at least 1" in capsys.readouterr().err


def test_memory_help_mentions_show_rev(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["memory", "--help"])
    assert "show [REV]" in capsys.readouterr().out


def test_without_git_the_error_says_to_install_it(config: Path, tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "PATH": str(tmp_path / "no-such-bin")}
    done = subprocess.run([sys.executable, "-m", "agent.cli", "memory", "show", "--config", str(config)],
                          env=env, capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2])
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("reverie: Memory needs the git program") and "Install git" in done.stderr
