"""Real-time scheduling for the threads whose lateness moves addresses."""

from __future__ import annotations

import os
import threading

from externalip import log

_log = log.get(__name__)


def realtime(priority: int, link: str) -> bool:
    """Run the calling thread under SCHED_RR at `priority` (0: leave it).

    A node whose CPUs are saturated (a batch job, a compile, the API server
    and a scheduler next to the agent) delays a normal thread's wake-ups by
    hundreds of milliseconds: its beats stop and its fence lapses although
    nothing failed. keepalived runs VRRP at real-time priority for the same
    reason. The thread sleeps 99% of the time, so it takes nothing from others.
    """
    if priority <= 0:
        return False
    try:
        os.sched_setscheduler(threading.get_native_id(), os.SCHED_RR,
                              os.sched_param(priority))
    except (OSError, ValueError) as err:  # no CAP_SYS_NICE (a pod without it)
        _log.info("heartbeats run at normal priority", link=link, priority=priority,
                  error=str(err))
        return False
    return True
