"""The shared per-pass guard: a failed pass is logged, counted and retried."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from prometheus_client import REGISTRY

from externalip.kube.api import ServerError
from externalip.loops import drive, guarded


def failures(loop: str) -> float:
    return REGISTRY.get_sample_value("externalip_pass_failures_total", {"loop": loop}) or 0


async def test_guarded_counts_and_reports_a_failed_pass() -> None:
    async def broken() -> None:
        raise KeyError("spec")

    async def fine() -> None:
        return None

    before = failures("t-guard")
    assert await guarded(broken, "t-guard") is False
    assert failures("t-guard") == before + 1
    assert await guarded(fine, "t-guard") is True
    assert failures("t-guard") == before + 1


async def test_guarded_lets_cancellation_through() -> None:
    async def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await guarded(cancelled, "t-cancel")


async def test_drive_retries_a_failing_pass_and_keeps_running() -> None:
    runs: list[int] = []
    done = asyncio.Event()

    async def step() -> None:
        runs.append(len(runs))
        if len(runs) <= 2:  # the API answered with a proxy's error page, twice
            raise ServerError(502, "HTTP502", "<html>Bad Gateway</html>")
        if len(runs) == 4:
            done.set()

    kick = asyncio.Event()
    kick.set()
    before = failures("t-drive")
    task = asyncio.create_task(drive(step, kick, period=0.05, retry=0.01, loop="t-drive"))
    try:
        await asyncio.wait_for(done.wait(), 10)
        assert not task.done()  # the loop outlived both failures
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert failures("t-drive") == before + 2
