"""Control loops that outlive any one failed pass; shared by every program.

A pass (a reconcile, a report, a scheduler pass) may fail for reasons no
one foresaw: an API answer nobody expected, a bug in one object's handling.
The loop must not die of it: the program would crash-loop on the same
input, and a crash-looping agent is the worst outcome (its addresses
expire). A failed pass is logged with its error, counted by loop, and run
again after a backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from prometheus_client import Counter

from externalip import log

PASS_FAILURES = Counter("externalip_pass_failures_total",
                        "Passes of a control loop that raised (each is logged and retried)",
                        ["loop"])

_log = log.get(__name__)


async def guarded(step: Callable[[], Awaitable[object]], loop: str) -> bool:
    """Run one pass; False (logged and counted) if it raised anything but cancellation."""
    try:
        await step()
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        PASS_FAILURES.labels(loop).inc()
        _log.error("pass failed; retrying", loop=loop, error=repr(exc))
        return False
    return True


async def drive(
    step: Callable[[], Awaitable[None]],
    kick: asyncio.Event,
    period: float,
    retry: float = 1.0,
    *,
    loop: str = "reconcile",
) -> None:
    """Run `step` when kicked and at least every `period` seconds, forever.

    Kicks that arrive while a pass runs coalesce into one more run. A failed
    pass is retried after `retry` seconds, doubling up to `period`.
    """
    backoff = retry
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(kick.wait(), timeout=period)
        kick.clear()
        if await guarded(step, loop):
            backoff = retry
            continue
        await asyncio.sleep(backoff)
        backoff = min(period, backoff * 2)
        kick.set()
