"""The heartbeat thread's real-time priority (needs root, as CAP_SYS_NICE)."""

from __future__ import annotations

import os
import threading

import pytest

from externalip.net.realtime import realtime

pytestmark = pytest.mark.integration


def _in_thread(priority: int) -> tuple[bool, int, int]:
    out: list[tuple[bool, int, int]] = []

    def run() -> None:
        ok = realtime(priority, "eth0")
        tid = threading.get_native_id()
        out.append((ok, os.sched_getscheduler(tid), os.sched_getparam(tid).sched_priority))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return out[0]


def test_the_thread_alone_runs_round_robin_at_the_priority() -> None:
    assert _in_thread(10) == (True, os.SCHED_RR, 10)
    # only that thread: the process's main thread is untouched
    assert os.sched_getscheduler(threading.get_native_id()) == os.SCHED_OTHER


def test_zero_or_a_refused_priority_leaves_the_thread_as_it_was() -> None:
    assert _in_thread(0) == (False, os.SCHED_OTHER, 0)
    assert _in_thread(1000) == (False, os.SCHED_OTHER, 0)  # EINVAL: logged, not raised
