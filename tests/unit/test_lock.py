"""requirements.lock, from which `make deps` and the image install the runtime
dependencies: every direct dependency bounded on both sides in
pyproject.toml, pinned in the lock within those bounds, every pin hashed."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]


def locked() -> dict[str, tuple[Version, list[str]]]:
    text = (REPO / "requirements.lock").read_text()
    pins: dict[str, tuple[Version, list[str]]] = {}
    for block in re.split(r"\n(?=\S)", text):
        head = re.match(r"([A-Za-z0-9_.\-]+)==(\S+)", block)
        if head:
            hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", block)
            pins[canonicalize_name(head[1])] = (Version(head[2]), hashes)
    return pins


def test_every_runtime_dependency_is_bounded_and_locked_within_its_bounds() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = locked()
    for line in project["dependencies"]:
        req = Requirement(line)
        operators = {spec.operator for spec in req.specifier}
        assert ">=" in operators and "<" in operators, f"{line}: needs a lower and an upper bound"
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in requirements.lock: run make lock"
        assert pins[name][0] in req.specifier, f"{req.name}=={pins[name][0]} outside {line}"


def test_every_pin_carries_hashes() -> None:
    pins = locked()
    assert len(pins) >= 6
    for name, (_, hashes) in pins.items():
        assert hashes, f"{name} has no hash in requirements.lock"
