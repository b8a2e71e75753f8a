"""How often a status that follows many small changes is written. Pure.

An agent's IpNode inventory lists every address it holds, a pool's status
counts the addresses in use: in a burst of new Services both change with
every one of them, and written on every change they cost a request per
Service (issue 16: at most 3 for everything). Paced, the first change after
a quiet `interval` goes out at once (an idle cluster sees no delay), later
ones at most once per `interval`, and the write that goes out carries the
latest state: the states in between are owed to nobody. A change a reader
needs at once is written at once whatever the pace; the caller says which
(`urgent`), with its reasons next to the reader.
"""

from __future__ import annotations

import math


class Pacer:
    """When the next write of one object may go out. The clock is the caller's."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last = -math.inf

    def delay(self, now: float, *, urgent: bool = False) -> float:
        """Seconds until a changed status may be written; 0.0: now."""
        if urgent or self.interval <= 0:
            return 0.0
        return max(0.0, self._last + self.interval - now)

    def wrote(self, now: float) -> None:
        """A write went out (or was tried: a failed one is retried at the same pace)."""
        self._last = now
