from __future__ import annotations

import asyncio

from externalip.kube.workqueue import WorkQueue


async def test_a_key_added_twice_is_queued_once() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    q.add("a")
    q.add("b")
    assert len(q) == 2
    assert await q.get() == "a"
    assert await q.get() == "b"


async def test_a_key_added_while_processing_comes_back_after_done() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    key = await q.get()
    q.add("a")  # changed again while a worker holds it
    assert len(q) == 0  # never handed to a second worker at the same time
    q.done(key)
    assert await asyncio.wait_for(q.get(), 1) == "a"


async def test_rate_limited_retries_back_off_and_forget_resets() -> None:
    q: WorkQueue[str] = WorkQueue(base_delay=0.05, max_delay=1.0)
    loop = asyncio.get_running_loop()
    q.add_rate_limited("a")
    q.add_rate_limited("a")
    assert q.failures("a") == 2
    start = loop.time()
    assert await asyncio.wait_for(q.get(), 2) == "a"
    assert loop.time() - start >= 0.04
    q.forget("a")
    assert q.failures("a") == 0
