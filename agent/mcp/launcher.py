"""Start an MCP server so that it can never outlive reverie (stdlib only; runs as a script).

    python -I launcher.py --parent PID --keep PATH,HOME,API_TOKEN [--grace 2] -- COMMAND [ARG ...]

The MCP client spawns this instead of the server's command, as the leader of a new process group.
It keeps only the environment variables named by ``--keep`` (the SDK adds a few of its own; the
server must see exactly what the configuration allows), starts COMMAND in this process group with
stdin, stdout and stderr inherited (no bytes pass through here), then waits. When COMMAND exits,
anything it left running in the group is stopped and the launcher exits with COMMAND's code. When
the parent dies (``PR_SET_PDEATHSIG`` on Linux, a ``getppid()`` poll everywhere) or on
SIGTERM/SIGINT/SIGHUP, the whole group gets SIGTERM and, ``--grace`` seconds later (default 2),
SIGKILL. On Linux the launcher also adopts orphaned descendants, so it can reap them.

This file must not import anything from ``agent``: it is run by path with ``-I``, and every
import costs start-up time.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

GRACE = 2.0  # seconds between SIGTERM and SIGKILL
POLL = 0.25  # seconds between parent checks where PR_SET_PDEATHSIG is not available
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36


def parse(argv: list[str]) -> tuple[int, list[str], float, list[str]]:
    """(parent pid, names of variables to keep, grace seconds, command) from the command line."""
    if "--" not in argv:
        raise SystemExit("usage: launcher.py --parent PID --keep NAME,... [--grace SECONDS] -- COMMAND [ARG ...]")
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1:]
    values = dict(zip(options[::2], options[1::2], strict=False))
    if not command or "--parent" not in values:
        raise SystemExit("launcher.py: --parent and a command are required")
    keep = [name for name in values.get("--keep", "").split(",") if name]
    return int(values["--parent"]), keep, float(values.get("--grace", GRACE)), command


def linux_setup(parent: int) -> bool:
    """Ask Linux for SIGTERM when the parent dies, and to adopt our orphaned descendants.

    Adopting them (a "child subreaper") lets us reap their zombies, so the group is gone as soon as
    they are, rather than whenever init gets to it. False when the parent is already gone.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
            libc.prctl(PR_SET_CHILD_SUBREAPER, 1)
        except (OSError, AttributeError):
            pass  # the getppid() poll in supervise() still notices the parent's death
    return os.getppid() == parent  # else the parent died before the request took effect


def spawn(command: list[str], env: dict[str, str]) -> int:
    """Start the server in this process group, sharing our stdin, stdout and stderr."""
    try:
        # Python ignores SIGPIPE (and SIGXFSZ); the server must start with the defaults, as from a shell.
        pid = os.posix_spawnp(command[0], command, env, setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))
    except OSError as exc:
        print(f"reverie mcp launcher: cannot start {command[0]!r}: {exc.strerror or exc}", file=sys.stderr)
        raise SystemExit(127) from None
    # Our copies of the pipes would keep them open after the server is gone.
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    return pid


def exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code  # killed by a signal: the shell's convention


def reap(server: int, code: int | None = None) -> int | None:
    """Reap every child that exited (adopted orphans too); the server's exit code once it exited."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return code
        if pid == 0:
            return code
        if pid == server:
            code = exit_code(status)


def supervise(server: int, parent: int, wakeup: int) -> int | None:
    """Wait for the server to exit (its exit code) or for a reason to stop it (None)."""
    while True:
        code = reap(server)
        if code is not None:
            return code
        if os.getppid() != parent:
            return None
        ready, _, _ = select.select([wakeup], [], [], POLL)
        if ready and any(sig in STOP_SIGNALS for sig in os.read(wakeup, 64)):
            return None


def others_in_group() -> bool:
    """Whether any process but this one is left in our group (always assumed without /proc).

    Zombies count: they keep the group alive for whoever waits on it (the MCP SDK does). Once their
    parent is gone they are ours (we are a subreaper), and ``reap`` collects them.
    """
    if not os.path.isdir("/proc/self"):
        return True
    me, group = os.getpid(), os.getpgrp()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()  # the command name may contain spaces
        if len(fields) > 2 and int(fields[2]) == group:
            return True
    return False


def stop_group(server: int, grace: float) -> None:
    """SIGTERM to the group, then SIGKILL to whatever is still there after ``grace`` seconds."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    reap(server)
    if not others_in_group():
        return
    os.killpg(0, signal.SIGTERM)  # we are in the group, so this cannot fail for lack of permission
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        reap(server)
        if not others_in_group():
            return
        time.sleep(0.02)
    os.killpg(0, signal.SIGKILL)  # this process too: nothing in the group survives


def main(argv: list[str]) -> int:
    parent, keep, grace, command = parse(argv)
    env = {name: os.environ[name] for name in keep if name in os.environ}
    read, write = os.pipe()
    os.set_blocking(write, False)
    signal.set_wakeup_fd(write)
    for sig in (*STOP_SIGNALS, signal.SIGCHLD):
        signal.signal(sig, lambda *_: None)  # a Python handler, so the signal reaches the wakeup pipe
    if not linux_setup(parent):
        return 128 + signal.SIGTERM
    if os.getpgrp() != os.getpid():
        os.setpgid(0, 0)  # the group we stop must be ours alone, not our parent's
    pid = spawn(command, env)
    code = supervise(pid, parent, read)
    stop_group(pid, grace)
    return code if code is not None else 128 + signal.SIGTERM


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
