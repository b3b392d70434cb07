"""Cron benchmark: the scheduler inside ``reverie start`` with many jobs, and how on time it fires.

    python bench/cron.py        # prints a Markdown table; takes about three minutes

1. 1,000 jobs (crontab, ``every`` and future ``at`` jobs): ``reverie start`` as a subprocess against the
   Telegram and LLM stand-ins, compared with no jobs and with ``cron.enabled: false`` (3 rounds each,
   fresh workspace each time). Start time: spawn until ``state/status.json`` shows Telegram connected,
   and spawn until ``cron/state.json`` lists every job (each gets its ``seen`` mark when first scheduled).
   Idle RSS (VmRSS) after 3 s idle.
2. 100 one-shot (``at``) jobs due in the same second, ~5 s after the daemon is serving, in process
   (``build_daemon`` + ``serve``, instant LLM): delay from the slot to each run's start and end (the
   platform confirmed the message), read from ``cron/runs.jsonl``, and the sendMessage calls counted.
   All 100 answers go to the owner's one chat, so delivery is paced by the per-chat Telegram budget.

Targets are our own (no issue sets them): start time added <= 1 s, RSS added <= 20 MB, start p99 <= 1 s.
"""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.channels import rss_mb, start_daemon, wait_connected  # noqa: E402
from tests.fakes.llm import FakeLLM, Turn  # noqa: E402
from tests.fakes.telegram import FakeTelegram  # noqa: E402

Row = tuple[str, str, str]
OWNER = 4242
ROUNDS = 3
JOBS = 1000


def base_config(tmp: Path, llm: FakeLLM, tg: FakeTelegram) -> dict[str, Any]:
    return {"workspace": str(tmp / "ws"),
            "llm": {"provider": "anthropic", "model": "claude-bench", "api_key": "sk-ant-bench-0000",
                    "base_url": llm.url, "max_retries": 0},
            "channels": [{"type": "telegram", "token": tg.token, "base_url": tg.base_url}],
            "owner": {"telegram": [str(OWNER)]}, "logging": {"level": "WARNING"}}


def many_jobs(n: int) -> list[dict[str, Any]]:
    """A third crontab on weekdays, a third ``every`` (about an hour), a third ``at`` next year."""
    jobs: list[dict[str, Any]] = []
    year = datetime.now(UTC).year + 1
    for i in range(n):
        job: dict[str, Any] = {"name": f"job-{i:04d}", "message": f"Bench job {i}", "timezone": "Europe/Paris"}
        if i % 3 == 0:
            job["schedule"] = f"{i % 60} {i % 24} * * 1-5"
        elif i % 3 == 1:
            job["every"] = 3600 + i
        else:
            job["at"] = f"{year}-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}"
        jobs.append(job)
    return jobs


def state_jobs(tmp: Path) -> int:
    try:
        return len(json.loads((tmp / "ws" / "cron" / "state.json").read_text())["jobs"])
    except (OSError, ValueError, KeyError):
        return 0


async def one_start(tmp: Path, variant: str) -> tuple[float, float | None, float]:
    """(spawn -> connected, spawn -> every job in state.json or None, idle RSS MB) for one daemon start."""
    import yaml

    async with FakeLLM() as llm, FakeTelegram() as tg:
        data = base_config(tmp, llm, tg)
        if variant == "jobs":
            data["cron_jobs"] = many_jobs(JOBS)
        elif variant == "disabled":
            data["cron"] = {"enabled": False}
        config = tmp / "config.yaml"
        config.write_text(yaml.safe_dump(data))
        spawned = time.monotonic()
        proc = await start_daemon(config, tmp)
        try:
            connected_at: float | None = None
            scheduled_at: float | None = None
            async with asyncio.timeout(120):
                connected = asyncio.create_task(wait_connected(tmp, ["telegram"], timeout=120))
                while connected_at is None or (variant == "jobs" and scheduled_at is None):
                    if connected_at is None and connected.done():
                        connected.result()
                        connected_at = time.monotonic() - spawned
                    if variant == "jobs" and scheduled_at is None and state_jobs(tmp) >= JOBS:
                        scheduled_at = time.monotonic() - spawned
                    await asyncio.sleep(0.02)
            await asyncio.sleep(3)
            rss = rss_mb(proc.pid)
        finally:
            proc.terminate()
            await proc.wait()
    return connected_at, scheduled_at, rss


def spread(values: list[float], unit: str, fmt: str = ".2f") -> str:
    return f"{statistics.median(values):{fmt}} {unit} ({min(values):{fmt}}–{max(values):{fmt}})"


async def many(_: Path) -> list[Row]:
    results: dict[str, list[tuple[float, float | None, float]]] = {"disabled": [], "none": [], "jobs": []}
    for _round in range(ROUNDS):
        for variant in results:
            with tempfile.TemporaryDirectory() as tmp:
                results[variant].append(await one_start(Path(tmp), variant))
    conn = {v: [r[0] for r in rs] for v, rs in results.items()}
    rss = {v: [r[2] for r in rs] for v, rs in results.items()}
    sched = [r[1] or 0.0 for r in results["jobs"]]
    added = [j - n for j, n in zip(sched, conn["none"], strict=True)]
    rss_added = [j - d for j, d in zip(rss["jobs"], rss["disabled"], strict=True)]
    rss_jobs = [j - n for j, n in zip(rss["jobs"], rss["none"], strict=True)]
    return [
        ("start → Telegram connected, cron disabled", spread(conn["disabled"], "s"), ""),
        ("start → Telegram connected, cron on, no jobs", spread(conn["none"], "s"), ""),
        (f"start → Telegram connected, {JOBS:,} jobs", spread(conn["jobs"], "s"), ""),
        (f"start → all {JOBS:,} jobs in cron/state.json", spread(sched, "s"), ""),
        (f"start time added by {JOBS:,} jobs (all scheduled − no jobs connected)", spread(added, "s"), "<= 1 s"),
        ("idle RSS: cron disabled / no jobs / 1,000 jobs",
         " / ".join(f"{statistics.median(rss[v]):.0f}" for v in ("disabled", "none", "jobs")) + " MB", ""),
        (f"RSS added by the scheduler with {JOBS:,} jobs (vs cron disabled)", spread(rss_added, "MB", ".1f"),
         "<= 20 MB"),
        (f"  of which the {JOBS:,} jobs (vs cron on, no jobs)", spread(rss_jobs, "MB", ".1f"), ""),
    ]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * q) - 1)]


async def same_second(tmp: Path, n: int = 100, lead: float = 5.0) -> list[Row]:
    from agent.config_file import validate
    from agent.cron.runs import RunLog
    from agent.daemon import build_daemon
    from agent.serve import serve

    async with FakeLLM() as llm, FakeTelegram() as tg:
        llm.default = Turn(text="ok")
        due = math.ceil(time.time() + lead + 1.5)  # building and connecting take about a second in process
        iso = datetime.fromtimestamp(due, UTC).replace(tzinfo=None).isoformat(timespec="seconds")
        data = base_config(tmp, llm, tg) | {"cron_jobs": [
            {"name": f"same-{i:03d}", "message": f"Ping {i}", "at": iso, "timezone": "UTC"} for i in range(n)]}
        config = validate(data, None)
        daemon = build_daemon(config)
        stop = asyncio.Event()
        serving = asyncio.create_task(serve(daemon, stop=stop, drain_timeout=5))
        log = RunLog(config.workspace_path / "cron")
        try:
            async with asyncio.timeout(30):
                while not (daemon.channels["telegram"].state.connected and daemon.cron is not None
                           and daemon.cron.scheduler is not None):
                    await asyncio.sleep(0.02)
            ahead = due - time.time()
            async with asyncio.timeout(lead + 120):
                while sum(r.outcome == "ok" for r in log.runs(limit=10 * n)) < n:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # a duplicate would show up here
        finally:
            stop.set()
            await serving
        runs = log.runs(limit=10 * n)
        sends = len(tg.calls_of("sendMessage"))
    ok = [r for r in runs if r.outcome == "ok" and r.scheduled is not None]
    starts = [((r.start or 0) - (r.scheduled or 0)) * 1000 for r in ok]
    ends = [((r.end or 0) - (r.scheduled or 0)) * 1000 for r in ok]
    jobs = {r.job for r in ok}
    return [
        (f"{n} `at` jobs due in one second (due {ahead:.1f} s after serving): slot → start p50 / p99 / max",
         f"{statistics.median(starts):.0f} / {pct(starts, 0.99):.0f} / {max(starts):.0f} ms", "p99 <= 1000 ms"),
        ("  slot → end (delivered) p50 / p99", f"{statistics.median(ends):.0f} / {pct(ends, 0.99):.0f} ms", ""),
        ("  sendMessage calls / ok runs / distinct jobs / other runs",
         f"{sends} / {len(ok)} / {len(jobs)} / {len(runs) - len(ok)}", f"{n} / {n} / {n} / 0"),
    ]


async def main() -> None:
    rows: list[Row] = []
    for part in (many, same_second):
        with tempfile.TemporaryDirectory() as tmp:
            rows += await part(Path(tmp))
    print("| measure | value | target |\n|---|---|---|")
    for name, value, target in rows:
        print(f"| {name} | {value} | {target} |")


if __name__ == "__main__":
    asyncio.run(main())
