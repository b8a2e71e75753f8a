"""Which agents are alive, judged from their Lease renewals on our own clock.

A Lease is fresh while less than its leaseDurationSeconds has passed, on this
process's monotonic clock, since we last saw its renewTime change. Comparing
renewTime with our wall clock would make failover depend on clock skew
between machines; this does not.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass
class _Seen:
    renew_time: str
    at: float
    duration: float


class LeaseTracker:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._seen: dict[str, _Seen] = {}

    def observe(self, lease: Mapping[str, Any]) -> None:
        name = lease["metadata"]["name"]
        spec = lease.get("spec") or {}
        renew = str(spec.get("renewTime") or "")
        duration = float(spec.get("leaseDurationSeconds") or 0)
        seen = self._seen.get(name)
        if seen is None or seen.renew_time != renew:
            # First sight counts as a renewal: a scheduler that starts must not
            # declare every node dead before it has watched them once.
            self._seen[name] = _Seen(renew, self._clock(), duration)
        else:
            seen.duration = duration

    def forget(self, name: str) -> None:
        self._seen.pop(name, None)

    def alive(self, name: str, watching_since: float | None = 0.0) -> bool:
        """Fresh, counting only silence we could have heard: `watching_since`
        is when our own watch of the Leases last (re)connected, None while it
        is down. After an API outage every agent gets one full lease duration
        to renew before it is judged, as at first sight."""
        seen = self._seen.get(name)
        if seen is None:
            return False
        if watching_since is None:
            return True  # we cannot tell, and cannot write either
        return self._clock() - max(seen.at, watching_since) < seen.duration

    def next_expiry(self, watching_since: float | None = 0.0) -> float | None:
        """Seconds until the next live Lease would expire, for a timely wake-up."""
        now = self._clock()
        start = watching_since or 0.0
        ends = [max(s.at, start) + s.duration for s in self._seen.values()]
        left = [end - now for end in ends if end > now]
        return min(left) if left else None
