"""The size limits of the code base (docs/dev/contracts.md, issue 10): no file
in src/ over 350 lines, no function over 60. Files readable in one sitting,
functions that do one thing; this test keeps it so."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
MAX_FILE_LINES = 350
MAX_FUNCTION_LINES = 60


def sources() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if ".egg-info" not in p.parts)


def test_no_file_over_the_limit() -> None:
    assert sources(), SRC
    too_long = {str(p.relative_to(SRC)): n for p in sources()
                if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES}
    assert not too_long, f"files over {MAX_FILE_LINES} lines: {too_long}"


def test_no_function_over_the_limit() -> None:
    too_long = {}
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                length = (node.end_lineno or node.lineno) - start + 1
                if length > MAX_FUNCTION_LINES:
                    too_long[f"{path.relative_to(SRC)}:{node.lineno} {node.name}"] = length
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines: {too_long}"
