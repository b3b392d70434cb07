"""``reverie start``: one foreground process serving every channel, systemd-friendly.

Start: take the workspace lock, resume turns a crash interrupted, resend replies that were never
confirmed, start each channel on its own (retried with backoff). SIGTERM or SIGINT: new messages are
kept for the next start, running turns finish (up to the drain timeout), their replies are delivered,
channels stop, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from agent.daemon import Daemon, build_daemon
from agent.lock import WorkspaceLock

logger = logging.getLogger(__name__)
DRAIN_TIMEOUT = 30.0
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's options, from glibc's malloc.h


def run_start(args: argparse.Namespace) -> int:
    from agent.chat import load_from_args
    from agent.logs import setup_logging

    config, path = load_from_args(args)
    lock = WorkspaceLock(config.workspace_path)
    config.workspace_path.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock.acquire()
    steady_malloc()
    try:
        daemon = build_daemon(config, path)
        setup_logging(daemon.runtime.workspace, config.secrets(), level=config.logging.level,
                      stderr_level=logging.INFO, max_bytes=config.logging.max_bytes, backups=config.logging.backups)
        asyncio.run(serve(daemon, drain_timeout=args.drain_timeout))
    finally:
        lock.release()
    return 0


def steady_malloc() -> None:
    """Keep the daemon's memory from creeping up (glibc only; elsewhere nothing changes).

    glibc serves a large block (a session file's messages, a request body) from mmap and gives it back
    to the system when freed, but each such free raises the size it will serve from mmap to that block's.
    Over days of growing conversations, ever larger blocks then come from the heap, and the heap keeps
    its high-water mark. Fixed thresholds (glibc's starting values) keep large blocks in mmap."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    for option in (M_MMAP_THRESHOLD, M_TRIM_THRESHOLD):
        mallopt(option, 128 * 1024)


async def serve(daemon: Daemon, *, drain_timeout: float = DRAIN_TIMEOUT, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runtime, delivery, supervisor = daemon.runtime, daemon.delivery, daemon.supervisor
    pending = daemon.journal.pending()
    for _, msg in pending.turns:  # before any channel polls: a redelivery of these is a duplicate
        daemon.gateway.seen.add(msg.channel, msg.chat_id, msg.message_id)
    background = [asyncio.create_task(delivery.pump(runtime.bus, label), name=f"pump {label}")
                  for label in daemon.channels]
    background += [asyncio.create_task(supervisor.keep_up(label), name=f"start {label}") for label in daemon.channels]
    background.append(asyncio.create_task(supervisor.watch(), name="status"))
    delivery.redeliver(pending.intents)
    if runtime.mcp is not None:  # channels connect meanwhile; turns wait until every tool is registered
        await runtime.mcp.start(runtime.tools)
        supervisor.write_status()
    service = asyncio.create_task(runtime.service.run(), name="agent service")
    background.append(asyncio.create_task(runtime.subagents.run(), name="subagent reports"))
    if daemon.cron is not None:  # before the resumed turns: it waits for the scheduled ones among them
        await daemon.cron.start([msg for _, msg in pending.turns], [out for _, out in pending.intents])
    for turn_id, msg in pending.turns:
        runtime.service.dispatch(msg, resume=turn_id)
    runtime.subagents.resume(runtime.service.dispatch)  # after people's turns: theirs were promised first
    if daemon.dream is not None:  # first run a minute after start at the earliest, then every interval
        interval = runtime.config.memory.dream.interval_minutes * 60
        background.append(asyncio.create_task(daemon.dream.every(interval), name="dream"))
    if pending.turns or pending.intents:
        logger.info("resuming %d turns and %d unconfirmed replies from the last run",
                    len(pending.turns), len(pending.intents))
    logger.info("reverie is serving %s", ", ".join(daemon.channels))
    await stop.wait()
    logger.info("stopping: finishing running turns (up to %.0f s)", drain_timeout)
    await drain(daemon, service, background, drain_timeout)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)


async def drain(daemon: Daemon, service: asyncio.Task[None], background: list[asyncio.Task[None]],
                timeout: float) -> None:  # noqa: ASYNC109 (a deadline for the whole drain)
    """Everything within ``timeout`` plus at most 10 s for the channels to close (systemd allows more)."""
    runtime = daemon.runtime
    deadline = asyncio.get_running_loop().time() + timeout
    daemon.gateway.draining = True  # from now on, new messages wait in the journal for the next start
    if daemon.cron is not None:
        daemon.cron.stop()  # no new runs; running ones are journaled turns and finish below
    service.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await service
    while not runtime.bus.inbound.empty():  # already on the bus: still answered now
        runtime.service.dispatch(runtime.bus.inbound.get_nowait())
    await runtime.service.drain(_left(deadline))
    for _ in range(100):  # let the pumps turn the last replies into journaled deliveries
        if all(runtime.bus.outbound(label).empty() for label in daemon.channels):
            break
        await asyncio.sleep(0.01)
    left = await daemon.delivery.flush(max(_left(deadline), 1.0))
    if daemon.cron is not None:  # their answers are delivered (or journaled): record the runs
        await daemon.cron.finish(1.0)
    if left:
        logger.warning("%d replies were not confirmed before stopping; they are sent at the next start", left)
    for task in background:
        task.cancel()
    await asyncio.gather(*background, return_exceptions=True)
    await asyncio.gather(*(_stop(label, ch.stop()) for label, ch in daemon.channels.items()))
    if runtime.mcp is not None:
        await runtime.mcp.aclose()
    daemon.supervisor.write_status()
    logger.info("stopped")


def _left(deadline: float) -> float:
    return max(0.0, deadline - asyncio.get_running_loop().time())


async def _stop(label: str, stopping: object) -> None:
    try:
        await asyncio.wait_for(stopping, 10)  # type: ignore[arg-type]
    except Exception:  # supervision boundary: stopping one channel must not keep the others running
        logger.exception("channel %s did not stop cleanly", label)
