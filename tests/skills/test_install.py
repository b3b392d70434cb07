"""``reverie skill install`` on real folders and a local git repository: what it copies and what it refuses."""

from __future__ import annotations

import io
import os
import stat
import subprocess
from pathlib import Path

import pytest

from agent.cli import main

SKILL = "---\nname: {name}\ndescription: Greets people. Use when asked to greet.\n---\n\n# Greet\n\nSay hello.\n"


class Terminal(io.StringIO):
    """A stdin that claims to be a terminal, with the person's answers already typed."""

    def isatty(self) -> bool:
        return True




@pytest.fixture
def source(tmp_path: Path) -> Path:
    folder = tmp_path / "src" / "greet"
    (folder / "scripts").mkdir(parents=True)
    (folder / "SKILL.md").write_text(SKILL.format(name="greet"))
    (folder / "scripts" / "hello.sh").write_text(f"#!/bin/sh\ntouch {tmp_path / 'ran'}\n")
    (folder / "scripts" / "hello.sh").chmod(0o755)
    return folder


pytestmark = pytest.mark.usefixtures("no_terminal")


def skill(config: Path, *args: str) -> int:
    return main(["skill", *args, "--config", str(config)])


def installed(tmp_path: Path) -> list[str]:
    root = tmp_path / "ws" / "skills"
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) if root.exists() else []


def test_install_with_yes_copies_without_exec_bits(config: Path, source: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert skill(config, "install", str(source), "--yes") == 0
    out = capsys.readouterr().out
    assert "# Greet\n\nSay hello." in out and "Files (2, " in out and "SKILL.md, scripts/hello.sh" in out
    target = tmp_path / "ws" / "skills" / "greet"
    assert f"Installed skill greet into {target} (2 files)." in out
    assert installed(tmp_path) == ["greet", "greet/SKILL.md", "greet/scripts", "greet/scripts/hello.sh"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    assert stat.S_IMODE((target / "scripts").stat().st_mode) == 0o700
    assert stat.S_IMODE((target / "scripts" / "hello.sh").stat().st_mode) == 0o600
    assert not (tmp_path / "ran").exists()


def test_without_a_terminal_it_shows_then_refuses(config: Path, source: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert skill(config, "install", str(source)) == 2
    out, err = capsys.readouterr()
    assert "Say hello." in out and "pass --yes" in err and "Traceback" not in err
    assert installed(tmp_path) == []


def test_the_person_is_asked(config: Path, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    assert skill(config, "install", str(source)) == 1
    out, err = capsys.readouterr()
    assert f"Install skill greet into {tmp_path / 'ws' / 'skills' / 'greet'}? [y/N]" in out
    assert "Cancelled; nothing was changed." in err and installed(tmp_path) == []
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    assert skill(config, "install", str(source)) == 0
    assert "greet/SKILL.md" in installed(tmp_path)


def test_an_existing_skill_needs_force(config: Path, source: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert skill(config, "install", str(source), "--yes") == 0
    (source / "scripts" / "hello.sh").unlink()
    (source / "new.md").write_text("new\n")
    capsys.readouterr()
    assert skill(config, "install", str(source), "--yes") == 1
    err = capsys.readouterr().err
    assert "A skill named greet is already installed" in err and "Pass --force to replace it" in err
    assert "greet/scripts/hello.sh" in installed(tmp_path)
    assert skill(config, "install", str(source), "--yes", "--force") == 0
    assert installed(tmp_path) == ["greet", "greet/SKILL.md", "greet/new.md"]


def test_escaping_symlinks_are_rejected(config: Path, source: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(tmp_path / "secret.txt", source / "notes.md")
    assert skill(config, "install", str(source), "--yes") == 1
    err = capsys.readouterr().err
    assert "notes.md is a link to" in err and "outside the skill's folder" in err
    assert installed(tmp_path) == []


def test_links_inside_are_copied_as_files(config: Path, source: Path, tmp_path: Path) -> None:
    os.symlink("scripts/hello.sh", source / "hello-link.sh")
    assert skill(config, "install", str(source), "--yes") == 0
    copy = tmp_path / "ws" / "skills" / "greet" / "hello-link.sh"
    assert not copy.is_symlink() and copy.read_text().startswith("#!/bin/sh")


def test_oversized_trees_are_rejected(config: Path, source: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    with (source / "big.bin").open("wb") as f:
        f.truncate(5_000_001)  # sparse: counts as 5 MB without writing it
    assert skill(config, "install", str(source), "--yes") == 1
    assert "too big for a skill: the limit is 500 files and 5 MB" in capsys.readouterr().err
    (source / "big.bin").unlink()
    (source / "many").mkdir()
    for i in range(500):
        (source / "many" / f"{i}.txt").write_text("x")
    assert skill(config, "install", str(source), "--yes") == 1
    assert "the limit is 500 files" in capsys.readouterr().err
    assert installed(tmp_path) == []


def test_an_invalid_skill_is_rejected_first(config: Path, source: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    (source / "SKILL.md").write_text("---\nname: greet\n---\nno description\n")
    assert skill(config, "install", str(source), "--yes") == 1
    err = capsys.readouterr().err
    assert f"{source}: SKILL.md: no description" in err and "Nothing was installed" in err
    assert skill(config, "install", str(tmp_path / "nowhere"), "--yes") == 2
    assert "no such folder" in capsys.readouterr().err


def test_the_frontmatter_name_names_the_folder(config: Path, source: Path, tmp_path: Path) -> None:
    renamed = source.rename(source.parent / "Some Download")
    (renamed / "SKILL.md").write_text(SKILL.format(name="say-hello"))
    assert skill(config, "install", str(renamed), "--yes") == 0
    assert "say-hello/SKILL.md" in installed(tmp_path)


# --- git ------------------------------------------------------------------------------------------


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false",
                    "-c", "init.defaultBranch=main", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path, source: Path) -> Path:
    path = tmp_path / "greet-skill.git"
    path.mkdir()
    (path / "skills").mkdir()
    source.rename(path / "skills" / "greet")
    (path / "README.md").write_text("a repository of skills\n")
    git(path, "init", "-q")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "skills")
    return path


@pytest.fixture
def hook_template(tmp_path: Path) -> Path:
    """A git template whose post-checkout hook would leave a marker, were hooks allowed to run."""
    template = tmp_path / "template"
    (template / "hooks").mkdir(parents=True)
    hook = template / "hooks" / "post-checkout"
    hook.write_text(f"#!/bin/sh\ntouch {tmp_path / 'hook-ran'}\n")
    hook.chmod(0o755)
    return template


def test_a_git_repository_installs_without_running_anything(config: Path, repo: Path, tmp_path: Path,
                                                            hook_template: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GIT_TEMPLATE_DIR", str(hook_template))
    subprocess.run(["git", "clone", "-q", f"file://{repo}", str(tmp_path / "plain")], check=True)
    assert (tmp_path / "hook-ran").exists()  # the trap works with a plain clone...
    (tmp_path / "hook-ran").unlink()
    assert skill(config, "install", f"file://{repo}#skills/greet", "--yes") == 0
    assert not (tmp_path / "hook-ran").exists() and not (tmp_path / "ran").exists()  # ...not with ours
    assert installed(tmp_path) == ["greet", "greet/SKILL.md", "greet/scripts", "greet/scripts/hello.sh"]
    assert "Installed skill greet" in capsys.readouterr().out


def test_a_repository_without_a_top_skill_lists_what_it_holds(config: Path, repo: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert skill(config, "install", f"file://{repo}", "--yes") == 1
    err = capsys.readouterr().err
    assert "holds these skills: skills/greet" in err and "#FOLDER" in err
    assert skill(config, "install", f"file://{repo}#../..", "--yes") == 1
    assert "has no folder '../..'" in capsys.readouterr().err


def test_clone_failures_are_explained(config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert skill(config, "install", f"file://{tmp_path}/missing.git", "--yes") == 1
    err = capsys.readouterr().err
    assert f"git clone file://{tmp_path}/missing.git failed" in err and "Check the URL" in err
    assert skill(config, "install", "ftp://example.org/x", "--yes") == 2
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert skill(config, "install", "https://example.org/x.git", "--yes") == 1
    assert "git is not installed" in capsys.readouterr().err
