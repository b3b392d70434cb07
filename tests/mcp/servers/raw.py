"""A hand-written JSON-RPC MCP server (stdio, no SDK) for what a real SDK server will not do.

    python tests/mcp/servers/raw.py [--stale] [--say-on-stderr TEXT]

Tools: ``plain`` (answers its name); ``err32000`` and ``err32001`` (answer with those JSON-RPC error
codes, as a healthy server may); ``freeze`` (stops reading stdin: it answers nothing ever again);
``flip`` (changes its tools twice, announcing each change: to [..., b], then [..., c]). With
``--stale`` the first tools/list after a change answers a second late, with the old list.
"""

from __future__ import annotations

import json
import sys
import threading
import time

lock = threading.Lock()
lists = 0


def send(message: dict[str, object]) -> None:
    with lock:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()


def tool(name: str) -> dict[str, object]:
    return {"name": name, "description": name, "inputSchema": {"type": "object", "properties": {}}}


tools = [tool(n) for n in ("plain", "err32000", "err32001", "freeze", "flip")]


def list_tools(request_id: object) -> None:
    global lists
    lists += 1
    snapshot, late = list(tools), "--stale" in sys.argv and lists == 2

    def answer() -> None:
        if late:  # answers after the next list, with what the first change gave: [..., b]
            time.sleep(1.0)
            snapshot[:] = [t for t in snapshot if t["name"] != "c"] + [tool("b")]
        send({"jsonrpc": "2.0", "id": request_id, "result": {"tools": snapshot}})

    threading.Thread(target=answer).start()


def call(request_id: object, name: str) -> None:
    global tools
    if name.startswith("err"):
        code = -int(name[3:])
        send({"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": "upstream API quota exceeded"}})
        return
    if name == "freeze":
        time.sleep(3600)
    if name == "flip":
        tools = [*tools, tool("b")]
        send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
        time.sleep(0.05)
        tools = [t for t in tools if t["name"] != "b"] + [tool("c")]
        send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
    send({"jsonrpc": "2.0", "id": request_id, "result": {"content": [{"type": "text", "text": name}]}})


def handle(message: dict[str, object]) -> None:
    method, request_id = message.get("method"), message.get("id")
    params = message.get("params") or {}
    assert isinstance(params, dict)
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": request_id, "result": {
            "protocolVersion": params["protocolVersion"], "capabilities": {"tools": {"listChanged": True}},
            "serverInfo": {"name": "raw", "version": "1"}}})
    elif method == "tools/list":
        list_tools(request_id)
    elif method == "tools/call":
        call(request_id, params["name"])
    elif method == "ping":
        send({"jsonrpc": "2.0", "id": request_id, "result": {}})
    elif request_id is not None and method is not None:
        send({"jsonrpc": "2.0", "id": request_id, "error": {"code": -32601, "message": "no such method"}})


if __name__ == "__main__":
    if "--say-on-stderr" in sys.argv:
        print(sys.argv[sys.argv.index("--say-on-stderr") + 1], file=sys.stderr, flush=True)
    if "--exit-at-start" in sys.argv:
        sys.exit(3)
    for line in sys.stdin:
        if line.strip():
            handle(json.loads(line))
