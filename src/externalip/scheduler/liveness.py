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

    def alive(self, name: str) -> bool:
        seen = self._seen.get(name)
        return seen is not None and self._clock() - seen.at < seen.duration

    def next_expiry(self) -> float | None:
        """Seconds until the next live Lease would expire, for a timely wake-up."""
        now = self._clock()
        left = [s.at + s.duration - now for s in self._seen.values()
                if s.at + s.duration > now]
        return min(left) if left else None
