"""Size budgets from STYLE.md: raising one is a reviewed diff, not silent growth."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agent", "channels", "skills", "sessions", "memory")
MODULE_LINES, LOOP_LINES, FUNCTION_LINES = 400, 300, 50


def sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def test_modules_stay_small() -> None:
    over = []
    for path in sources():
        cap = LOOP_LINES if path == ROOT / "agent" / "loop.py" else MODULE_LINES
        lines = path.read_text().count("\n")
        if lines > cap:
            over.append(f"{path.relative_to(ROOT)}: {lines} lines (budget {cap})")
    assert not over, "split by concept:\n" + "\n".join(over)


def test_functions_stay_short() -> None:
    over = []
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > FUNCTION_LINES:
                    over.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {length} lines")
    assert not over, "\n".join(over)


def test_budget_check_sees_the_code() -> None:
    assert len(sources()) > 20
