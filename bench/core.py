"""Core benchmark: start-up, per-turn overhead, session I/O and prompt-prefix stability.

    python bench/core.py            # prints a Markdown table of medians; takes about a minute

The stand-in LLM answers with zero latency, so every figure is reverie's own cost (plus the SDK's).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.context import render  # noqa: E402
from agent.daemon import Runtime  # noqa: E402
from agent.providers.anthropic import AnthropicProvider  # noqa: E402
from agent.types import Message, Request  # noqa: E402
from bench.timing import median_ms  # noqa: E402
from sessions import SessionStore  # noqa: E402
from tests.fakes.llm import FakeLLM, Turn  # noqa: E402
from tests.fakes.prefix import is_prefix_extension  # noqa: E402
from tests.fakes.process import reverie_command  # noqa: E402
from tests.fakes.runtime import Chat, runtime_for  # noqa: E402

Row = tuple[str, str, str]


def timed_run(args: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (MB) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{args} exited {proc.returncode}")
    return time.perf_counter() - start, usage.ru_maxrss // 1024


def start_fake() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakes.llm", "--port", "0", "--reply", "ok"],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    return proc, line.split()[-1]


def one_shot(runs: int = 10) -> list[Row]:
    fake, url = start_fake()
    rows: list[Row] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "OPENAI_", "REVERIE_"))}
            env.update(HOME=tmp, NO_PROXY="127.0.0.1")
            for name, extra in (("anthropic", {"ANTHROPIC_API_KEY": "sk-bench", "ANTHROPIC_BASE_URL": url}),
                                ("openai-compatible", {"OPENAI_API_KEY": "sk-bench", "OPENAI_BASE_URL": url + "/v1"})):
                times, peaks = zip(*(timed_run([*reverie_command(), "chat", "-m", "hi"], env | extra) for _ in range(runs)),
                                   strict=True)
                rows.append((f"one-shot `reverie chat -m` ({name})", f"{statistics.median(times):.3f} s",
                             "<= 1.2 s" if name == "anthropic" else "<= 0.8 s"))
                rows.append((f"one-shot peak RSS ({name})", f"{statistics.median(peaks)} MB", "<= 110 MB"))
            helps = [timed_run([*reverie_command(), "--help"], env)[0] for _ in range(runs)]
            rows.append(("`reverie --help`", f"{statistics.median(helps):.3f} s", "<= 0.25 s"))
    finally:
        fake.terminate()
        fake.wait()
    return rows



async def turns(tmp: Path) -> list[Row]:
    async with FakeLLM() as fake:
        runtime = runtime_for(tmp, fake)
        async with runtime.running():
            chat = Chat(runtime)
            counter = itertools.count()
            text = await median_ms(lambda: chat.ask("hello", chat=f"text{next(counter)}"), 50)
            fake.responder = lambda rec: (Turn(text="done") if "tool_result" in str(rec.body["messages"][-1])
                                          else Turn(tool_calls=[("list_dir", {})]))
            tool = await median_ms(lambda: chat.ask("list", chat=f"tool{next(counter)}"), 50)
            fake.responder = None
            at = {}
            for i in range(1, 201):
                start = time.perf_counter()
                await chat.ask(f"message number {i} in a long conversation", chat="long")
                if i in range(6, 15) or i in range(196, 205):
                    at.setdefault(i < 100, []).append((time.perf_counter() - start) * 1000)
            ratio = statistics.median(at[False]) / statistics.median(at[True])
            own = own_cost(runtime)
            long_bodies = [r.body for r in fake.requests if "in a long conversation" in str(r.body["messages"][0])]
            stable = sum(is_prefix_extension(a, b) for a, b in itertools.pairwise(long_bodies))
    return [("text turn, in process", f"{text:.1f} ms", "<= 10 ms"),
            ("one-tool turn, in process", f"{tool:.1f} ms", "<= 20 ms"),
            ("turn 200 / turn 10 of one session", f"{ratio:.2f}", "<= 1.3"),
            ("  of which reverie's own request building, turn 10 -> turn 200", own, "(SDK + wire are the rest)"),
            ("requests that extend the previous one (200 turns)",
             f"{stable}/{len(long_bodies) - 1} = {100 * stable / (len(long_bodies) - 1):.0f}%", "100%")]


def own_cost(runtime: Runtime) -> str:
    """Time reverie itself spends turning the session into a request, at 20 and at 400 messages."""
    session = runtime.sessions.get("test:long")
    provider = runtime.default_model.providers[0]
    assert isinstance(provider, AnthropicProvider)
    system, tools = runtime.service.prompt.system(), runtime.service.tools.specs()
    result = []
    for count in (20, 400):
        history = session.active()[-count - 1:]
        samples = []
        for _ in range(50):
            start = time.perf_counter()
            provider.params(Request(system, render(history, None), tools))
            samples.append((time.perf_counter() - start) * 1000)
        result.append(statistics.median(samples))
    return f"{result[0]:.2f} ms -> {result[1]:.2f} ms"


def session_io(tmp: Path) -> list[Row]:
    store = SessionStore(tmp / "sessions")
    session = store.get("bench:big")
    for i in range(5_000):
        session.append(Message.user_text(f"question {i} " + "x" * 80),
                       Message("assistant", [{"type": "text", "text": f"answer {i} " + "y" * 200}]))
    samples = []
    for i in range(200):
        start = time.perf_counter()
        session.append(Message.user_text(f"one more {i}"))
        samples.append((time.perf_counter() - start) * 1000)
    loads = []
    for _ in range(10):
        start = time.perf_counter()
        loaded = SessionStore(tmp / "sessions").get("bench:big")
        loads.append((time.perf_counter() - start) * 1000)
    assert len(loaded.messages) == 10_200
    return [("append one message at 10,000 messages", f"{statistics.median(samples):.3f} ms", "<= 1 ms"),
            ("load a 10,000-message session", f"{statistics.median(loads):.1f} ms", "<= 50 ms")]


def main() -> None:
    rows = one_shot()
    with tempfile.TemporaryDirectory() as tmp:
        rows += asyncio.run(turns(Path(tmp)))
        rows += session_io(Path(tmp))
    print("| measure | median | target |\n|---|---|---|")
    for name, value, target in rows:
        print(f"| {name} | {value} | {target} |")


if __name__ == "__main__":
    main()
