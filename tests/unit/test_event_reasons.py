"""Every Event reason the code emits is documented, and every documented one
is emitted (issue 15: the docs said `ClaimScheduled`, the code `ClaimMoved`)."""

from __future__ import annotations

import ast
import itertools
import re
from pathlib import Path

from externalip.core.notices import SEVERAL

REPO = Path(__file__).resolve().parents[2]
TYPES = {"NORMAL", "WARNING"}
CAMEL = re.compile(r"[A-Z][a-z]+[A-Z]\w*\Z")


def _is_type(node: ast.expr) -> bool:
    return (isinstance(node, ast.Name) and node.id in TYPES) or (
        isinstance(node, ast.Constant) and node.value in ("Normal", "Warning"))


def _reason_after_type(elts: list[ast.expr]) -> str | None:
    """Event(service, WARNING, "Reason", ...), recorder.emit(ref, WARNING, "Reason", ...)
    and ("Normal", "Reason", message) notes (core.placement)."""
    for kind, reason in itertools.pairwise(elts):
        if _is_type(kind) and isinstance(reason, ast.Constant) and isinstance(reason.value, str) \
                and not _is_type(reason):  # (NORMAL, WARNING = "Normal", "Warning")
            return reason.value
    return None


def _refusal_pairs(node: ast.AST) -> list[str]:
    """`return "Reason", message` and `reason, message = "Reason", ...`: refusals
    that become a Warning's reason (core.tenancy, core.desired)."""
    value = node.value if isinstance(node, (ast.Return, ast.Assign)) else None
    if isinstance(value, ast.Tuple) and len(value.elts) == 2:
        first = value.elts[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str) \
                and CAMEL.match(first.value):
            return [first.value]
    return []


def emitted() -> set[str]:
    reasons = {SEVERAL}
    for path in (REPO / "src" / "externalip").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            elts = node.args if isinstance(node, ast.Call) else \
                node.elts if isinstance(node, ast.Tuple) else []
            if reason := _reason_after_type(elts):
                reasons.add(reason)
            reasons.update(_refusal_pairs(node))
    return reasons


def documented() -> set[str]:
    text = (REPO / "docs" / "observability.md").read_text()
    section = text.split("## Events", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(\w+)` \|", section, re.MULTILINE))


def test_the_events_table_lists_exactly_the_reasons_the_code_emits() -> None:
    code, docs = emitted(), documented()
    assert {"NoPool", "ClaimMoved", "AddressRefused", "InvalidSpec"} <= code  # the scan works
    assert code - docs == set(), "emitted but not in docs/observability.md's Events table"
    assert docs - code == set(), "in docs/observability.md's Events table but never emitted"
