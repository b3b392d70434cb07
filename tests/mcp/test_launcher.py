"""The launcher script on its own: exact environment, exit codes, and the whole group stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from agent.mcp.transport import LAUNCHER
from tests.mcp.helpers import alive


def launch(*command: str, keep: str = "PATH,KEPT", env: dict[str, str] | None = None,
           parent: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-I", str(LAUNCHER), "--parent", str(parent or os.getpid()), "--keep", keep, "--", *command],
        env={"PATH": os.environ["PATH"], "KEPT": "yes", "DROPPED": "secret", **(env or {})},
        capture_output=True, text=True, timeout=30, start_new_session=True)


def test_the_server_sees_only_the_kept_variables_and_its_exit_code_is_passed_on() -> None:
    done = launch("env")  # not python: it would add LC_CTYPE to its own environment (PEP 538)
    assert sorted(line.split("=")[0] for line in done.stdout.splitlines()) == ["KEPT", "PATH"]
    assert launch("sh", "-c", "exit 7").returncode == 7
    assert launch("sh", "-c", "kill -TERM $$").returncode == 128 + signal.SIGTERM


def test_stdin_and_stdout_are_the_servers_own() -> None:
    done = subprocess.run([sys.executable, "-I", str(LAUNCHER), "--parent", str(os.getpid()), "--keep", "PATH",
                           "--", "cat"], input="line one\nline two\n", capture_output=True, text=True, timeout=30,
                          start_new_session=True)
    assert (done.returncode, done.stdout) == (0, "line one\nline two\n")


def test_a_missing_command_exits_127_saying_so() -> None:
    done = launch("/nonexistent/server")
    assert done.returncode == 127
    assert "cannot start '/nonexistent/server': No such file or directory" in done.stderr


def test_the_parent_dying_takes_the_server_and_a_stubborn_grandchild(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # The server ignores SIGTERM and leaves a grandchild that ignores it too: only SIGKILL works.
    server = f"trap '' TERM; sleep 600 & echo $$ $! > {pids}; wait"
    parent = subprocess.Popen([sys.executable, "-c", f"""
import os, subprocess, sys, time
subprocess.Popen([sys.executable, "-I", {str(LAUNCHER)!r}, "--parent", str(os.getpid()), "--keep", "PATH",
                  "--grace", "0.3", "--", "sh", "-c", {server!r}], start_new_session=True)
time.sleep(600)
"""])
    try:
        deadline = time.monotonic() + 30
        while not (pids.exists() and len(pids.read_text().split()) == 2):
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        server_pid, grandchild = map(int, pids.read_text().split())
        assert alive(server_pid) and alive(grandchild)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 15
    while alive(server_pid) or alive(grandchild):
        assert time.monotonic() < deadline, "the server or its child outlived the parent"
        time.sleep(0.02)
