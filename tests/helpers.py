"""Small helpers shared by tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def eventually(predicate: Callable[[], bool], within: float = 30.0,
                     what: str = "condition") -> None:
    """Wait until predicate() is true; fail with `what` after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not met within {within}s")
        await asyncio.sleep(0.05)


def wait_for(predicate: Callable[[], bool], within: float = 30.0, what: str = "condition") -> None:
    """The same for synchronous tests."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {within}s")
        time.sleep(0.05)
