"""Labs on this machine, as their state files describe them, for the commands
that act on a lab another process holds (`lab down|env|status|fault|pod`).

Each lab writes /run/externalip-lab/<prefix>/state.json; `destroy` removes a
lab from it even when its owner was killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from externalip_lab import podman
from externalip_lab.topology import ip

STATE_ROOT = Path("/run/externalip-lab")


class NoSuchLabError(LookupError):
    pass


def running_labs() -> list[dict[str, Any]]:
    labs = []
    for state in sorted(STATE_ROOT.glob("*/state.json")):
        with contextlib.suppress(OSError, ValueError):
            labs.append(json.loads(state.read_text()))
    return labs


def select(prefix: str | None, every: bool = False,
           labs: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The labs a command acts on (among `labs`, default those running): the
    one named by prefix, the only one, or (every) all; a clear error otherwise."""
    labs = running_labs() if labs is None else labs
    if every:
        return labs
    if prefix:
        found = [s for s in labs if s["prefix"] == prefix]
        if not found:
            raise NoSuchLabError(f"no lab with prefix {prefix!r} "
                                 f"(running: {', '.join(s['prefix'] for s in labs) or 'none'})")
        return found
    if len(labs) > 1:
        raise NoSuchLabError(f"{len(labs)} labs are running "
                             f"({', '.join(s['prefix'] for s in labs)}): name one with "
                             "--prefix, or use --all")
    if not labs:
        raise NoSuchLabError("no lab running")
    return labs


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def destroy(state: dict[str, Any]) -> None:
    """Remove a lab from its state file: its processes (by PID), namespaces, files."""
    owner = int(state.get("owner", 0))
    if owner and owner != os.getpid() and _alive(owner):
        with contextlib.suppress(ProcessLookupError):
            os.kill(owner, signal.SIGTERM)  # let it clean up after itself first
        deadline = time.monotonic() + 30
        while _alive(owner) and time.monotonic() < deadline:
            time.sleep(0.2)
    for pid in state.get("pids", []):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    if shutil.which("podman"):  # a lab from the image: its containers outlive their clients
        podman.remove_containers(str(state["prefix"]))
    for netns in state.get("namespaces", []):
        ip("netns", "del", str(netns), check=False)
    shutil.rmtree(STATE_ROOT / str(state["prefix"]), ignore_errors=True)
