"""Running a program's jobs until a signal: shared by every program."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Coroutine
from typing import Any

from externalip import log

_log = log.get(__name__)


async def until_signal(jobs: list[Coroutine[Any, Any, None]]) -> int:
    """Run the jobs until SIGTERM/SIGINT (0) or until one of them dies (1)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.ensure_future(job) for job in jobs]
    waiter = asyncio.ensure_future(stop.wait())
    running: set[asyncio.Future[Any]] = {waiter, *tasks}
    code = 0
    # A job that returns has simply finished its work (e.g. a one-shot kick);
    # one that raises takes the program down, so it restarts clean.
    while not waiter.done() and code == 0:
        done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not waiter and task.exception() is not None:
                _log.error("task died", error=repr(task.exception()))
                code = 1
    for task in [waiter, *tasks]:
        task.cancel()
    for task in [waiter, *tasks]:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    return code
