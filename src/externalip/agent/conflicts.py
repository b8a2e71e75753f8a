"""Addresses another host on the segment uses: not placed, and said so.

Issue 12, item 11. Before a claim's address is placed for the first time
(core.claims.first_placements: never held, not on the node), the agent asks
the segment (net.probe). If another MAC answers, the address is not added:
the claim's status says `ready: false` with the reason and the MAC
(`status.conflict`, which the scheduler's pool reads to skip the address), a
Warning `AddressConflict` goes on the claim, and
`externalip_address_conflicts_total{when="probe"}` counts it. The verdict is
kept for HOLD_OFF seconds, so a reconcile does not probe again each time.

A foreign MAC that announces an address we hold later (net.conflict hears
it) raises the same Warning and `{when="held"}`; the address stays (the API
says it is ours; yielding would let any host take a Service down).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass

from prometheus_client import Counter

from externalip import log
from externalip.core.addresses import IPAddress
from externalip.core.claims import first_placements
from externalip.core.holding import Want
from externalip.core.model import Claim

_log = log.get(__name__)

CONFLICTS = Counter("externalip_address_conflicts_total",
                    "Another host on the segment uses an address: found by the probe before "
                    "placing it, or heard announcing one we hold", ["when"])
HOLD_OFF = 30.0  # seconds a probe's verdict stands
HEARD_REPEAT = 60.0  # seconds before the same foreign announcement is reported again

Prober = Callable[[str, Collection[IPAddress]], Awaitable[dict[IPAddress, bytes]]]


@dataclass(frozen=True)
class Conflict:
    ip: IPAddress
    mac: str
    until: float


class Conflicts:
    def __init__(self, prober: Prober | None, clock: Callable[[], float] = time.monotonic):
        self._probe = prober  # None: --probe=false
        self._clock = clock
        self._found: dict[str, Conflict] = {}  # claim name -> conflict
        self._heard: dict[tuple[IPAddress, bytes], float] = {}
        self._reports: list[tuple[str, str]] = []

    async def screen(self, claims: list[Claim], wants: list[Want],
                     present: Collection[IPAddress]) -> list[Want]:
        """The wants without those whose address another host uses (probing
        first placements only)."""
        now = self._clock()
        names = {c.name for c in claims}
        self._found = {n: c for n, c in self._found.items() if n in names and c.until > now}
        fresh = [w for w in first_placements(claims, wants, present)
                 if not any(o in self._found for o in w.owners)]
        if fresh and self._probe is not None:
            await self._run(fresh, now)
        return [w for w in wants if not any(o in self._found for o in w.owners)]

    async def _run(self, fresh: list[Want], now: float) -> None:
        by_link: dict[str, list[Want]] = {}
        for want in fresh:
            by_link.setdefault(want.link, []).append(want)
        assert self._probe is not None
        for link, group in by_link.items():
            try:
                found = await self._probe(link, {w.interface.ip for w in group})
            except OSError as exc:  # no NET_RAW, a link gone: place unprobed, say so
                _log.warning("cannot probe for address conflicts", link=link, error=str(exc))
                continue
            for want in group:
                mac = found.get(want.interface.ip)
                if mac is None:
                    continue
                CONFLICTS.labels("probe").inc()
                _log.warning("address in use by another host; not placing it",
                             address=str(want.interface.ip), mac=mac.hex(":"), link=link)
                for owner in want.owners:
                    self._found[owner] = Conflict(want.interface.ip, mac.hex(":"),
                                                  now + HOLD_OFF)

    def problems(self) -> dict[str, str]:
        """claim name -> why it is not held (the claim status' message)."""
        return {name: f"address conflict: another host on the segment uses {c.ip} "
                      f"(MAC {c.mac} answered the probe); not placed"
                for name, c in self._found.items()}

    def macs(self) -> dict[str, str]:
        """claim name -> the foreign MAC (the claim status' `conflict`)."""
        return {name: c.mac for name, c in self._found.items()}

    def heard(self, ip: IPAddress, mac: bytes, owners: Iterable[str]) -> None:
        """A foreign MAC announced `ip`, which we hold: report it (not too often)."""
        now = self._clock()
        if now < self._heard.get((ip, mac), 0.0):
            return
        self._heard = {k: t for k, t in self._heard.items() if t > now}
        self._heard[(ip, mac)] = now + HEARD_REPEAT
        CONFLICTS.labels("held").inc()
        why = (f"address conflict: another host (MAC {mac.hex(':')}) announces {ip}, "
               "which this node holds; clients may reach either")
        self._reports += [(owner, why) for owner in owners]

    def heard_reports(self) -> list[tuple[str, str]]:
        """Reports of `heard` not yet turned into Events (and forgets them)."""
        out, self._reports = self._reports, []
        return out
