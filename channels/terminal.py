"""The terminal as a channel: the same bus, a person at a keyboard.

Interactive: streamed Markdown (rich), input history and multi-line input (prompt_toolkit; Alt-Enter
or Esc Enter inserts a newline, pasted text keeps its lines), Ctrl-C cancels the running answer,
Ctrl-D exits. With ``plain=True`` (stdout is not a terminal) replies are printed as plain text.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

from agent.bus import Inbound, MessageBus, Outbound

CHANNEL = "terminal"
LOCAL_COMMANDS = ("/exit", "/quit")


class TerminalChannel:
    name = CHANNEL

    def __init__(self, bus: MessageBus, chat_id: str = "default", *, plain: bool = False,
                 history_file: Path | None = None) -> None:
        self.bus, self.chat_id, self.plain, self.history_file = bus, chat_id, plain, history_file
        self._done: asyncio.Future[tuple[str, str]] | None = None
        self._asking: str | None = None
        self._reader: asyncio.Task[None] | None = None
        self._view = _View(plain)
        self.finals: list[str] = []  # kinds of every reply/error shown, in order
        self.answered = asyncio.Event()  # set at each of them

    @property
    def session_key(self) -> str:
        return f"{CHANNEL}:{self.chat_id}"

    async def start(self) -> None:
        self._reader = asyncio.create_task(self._deliver(), name="terminal outbound")

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def send(self, out: Outbound) -> None:
        self._view.show(out)
        if out.kind in ("reply", "error"):
            self.finals.append(out.kind)
            self.answered.set()
            if self._done is not None and not self._done.done() and out.reply_to == self._asking:
                self._done.set_result((out.kind, out.text))
            else:  # an answer to something else (a subagent's report) while the person types or waits
                self._view.end_turn()

    async def ask(self, text: str) -> tuple[str, str]:
        """Send one message and wait for its final ``reply`` or ``error``; Ctrl-C sends /stop."""
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self._asking = uuid.uuid4().hex[:12]  # the answer to this message names it in reply_to
        await self.bus.publish_inbound(Inbound(CHANNEL, self.chat_id, "owner", text, message_id=self._asking))
        interruptible = sys.platform != "win32" and not self.plain
        if interruptible:
            loop.add_signal_handler(signal.SIGINT, self._interrupt)
        try:
            return await self._done
        finally:
            if interruptible:
                loop.remove_signal_handler(signal.SIGINT)
            self._view.end_turn()

    def _interrupt(self) -> None:
        self.bus.inbound.put_nowait(Inbound(CHANNEL, self.chat_id, "owner", "/stop"))

    async def repl(self) -> int:
        """The interactive loop; returns the exit code."""
        self._view.banner()
        prompt = _make_prompt(self.history_file) if sys.stdin.isatty() and not self.plain else None
        while True:
            try:
                text = await _read(prompt)
            except EOFError:
                return 0
            except KeyboardInterrupt:
                continue
            if not text.strip():
                continue
            if text.strip().lower() in LOCAL_COMMANDS:
                return 0
            await self.ask(text)

    async def _deliver(self) -> None:
        queue = self.bus.outbound(CHANNEL)
        while True:
            await self.send(await queue.get())


def _make_prompt(history_file: Path | None) -> Any:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory, InMemoryHistory
    from prompt_toolkit.key_binding import KeyBindings

    keys = KeyBindings()

    @keys.add("escape", "enter")
    def _newline(event: Any) -> None:
        event.current_buffer.insert_text("\n")

    history = FileHistory(str(history_file)) if history_file else InMemoryHistory()
    return PromptSession(history=history, key_bindings=keys, multiline=False)


async def _read(prompt: Any) -> str:
    if prompt is not None:
        return str(await prompt.prompt_async("you › "))
    line = await asyncio.to_thread(sys.stdin.readline)
    if not line:
        raise EOFError
    return line.rstrip("\n")


class _View:
    """Rendering: live Markdown while text streams, one dim line per tool call."""

    def __init__(self, plain: bool) -> None:
        self.plain = plain
        self.buffer = ""
        self._live: Any = None
        self._console: Any = None
        if not plain:
            from rich.console import Console

            self._console = Console(highlight=False)

    def banner(self) -> None:
        if self._console is not None:
            self._console.print("[dim]reverie — /help for commands, Ctrl-C stops an answer, Ctrl-D exits[/dim]")

    def show(self, out: Outbound) -> None:
        if self.plain:
            self._show_plain(out)
        elif out.kind == "delta":
            self.buffer += out.text
            self._render()
        elif out.kind == "reply":
            if out.text != self.buffer:  # notes added after streaming, or a reply that did not stream
                self.buffer = out.text
                self._render()
        elif out.kind == "tool":
            self._stop_live()
            self._console.print(f"[dim]  › {_escape(out.text)}[/dim]")
        elif out.kind == "progress":  # a subagent's step, maybe in the middle of a streamed answer: print above it
            console = self._live.console if self._live is not None else self._console
            console.print(f"[dim cyan]  ⧗ {_escape(out.text)}[/dim cyan]")
        else:
            self._stop_live()
            style = "red" if out.kind == "error" else "dim italic"
            self._console.print(f"[{style}]{_escape(out.text)}[/{style}]")

    def _show_plain(self, out: Outbound) -> None:
        if out.kind == "reply":
            print(out.text, flush=True)
        elif out.kind in ("error", "notice"):
            print(out.text, file=sys.stderr, flush=True)
        elif out.kind == "progress":
            print(f"  ⧗ {out.text}", file=sys.stderr, flush=True)

    def _render(self) -> None:
        from rich.live import Live
        from rich.markdown import Markdown

        if self._live is None:
            self._live = Live(Markdown(self.buffer), console=self._console, refresh_per_second=12,
                              vertical_overflow="visible")
            self._live.start()
        else:
            self._live.update(Markdown(self.buffer))

    def _stop_live(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
            self.buffer = ""

    def end_turn(self) -> None:
        self._stop_live()
        self.buffer = ""


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
