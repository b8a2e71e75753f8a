"""Holding a set of addresses on the wire: plan, apply, announce, refresh.

Shared by the claims-mode agent and simple mode. One `reconcile(wants)` reads
the kernel's links and addresses, asks the pure `plan` what to do, removes
what is ours and no longer wanted, renews the lifetime of what stays, adds and
announces what is missing. It returns what is really held and what failed, so
the caller can report it (claim status, Events). No API access here.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge, Histogram
from pyroute2.netlink.exceptions import NetlinkError

from externalip import log
from externalip.core.addresses import IPAddress, IPInterface
from externalip.core.holding import Have, Plan, Want, plan
from externalip.net.announce import Announcer
from externalip.net.netlink import AddressExistsError, Link, Netlink

ADDRESSES_HELD = Gauge("externalip_addresses_held", "Addresses this process holds")
ANNOUNCEMENTS = Counter(
    "externalip_announcements_total",
    "Gratuitous ARP (family 4) / unsolicited NA (family 6) announcements sent",
    ["family"],
)
ANNOUNCE_SECONDS = Histogram(
    "externalip_announcement_seconds",
    "From an address added (or taken back) to its first announcement on the wire "
    "(pacing by --announce-rate included)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
RECONCILE_ERRORS = Counter(
    "externalip_reconcile_errors_total", "Failed steps of address reconciliation", ["step"]
)

_log = log.get(__name__)


@dataclass(frozen=True)
class Result:
    plan: Plan
    held: tuple[Want, ...]
    # owner -> why its address is not held (refusals and failed steps)
    problems: dict[str, str] = field(default_factory=dict)


def _announce_failed(exc: OSError) -> None:
    RECONCILE_ERRORS.labels("announce").inc()
    _log.warning("announcement failed", error=str(exc))


class AddressHolder:
    def __init__(self, netlink: Netlink, lifetime: float, announcer: Announcer | None = None,
                 announce_rate: float = 0.0, *,
                 clock: Callable[[], float] = time.monotonic):
        self.netlink = netlink
        self._clock = clock
        self.lifetime = lifetime
        self.announcer = announcer or Announcer(
            on_sent=lambda family: ANNOUNCEMENTS.labels(str(family)).inc(),
            on_error=_announce_failed,
            rate=announce_rate,
            on_first=self._first_announced,
        )
        # told of every address's first announcement (the takeover clock)
        self.on_announced: Callable[[IPAddress], None] = lambda _ip: None
        self.held: tuple[Want, ...] = ()
        self._links: dict[str, Link] = {}
        # When each held address was last given a fresh lifetime. Reconciles
        # run on every claim event; renewing 1,000 lifetimes each time would
        # burn CPU for nothing, so an address is renewed only when due.
        self._renewed: dict[tuple[str, IPInterface], float] = {}
        self._renew_after = 0.9 * lifetime / 3 if lifetime > 0 else math.inf
        self._adopted: int | None = None

    def _first_announced(self, ip: IPAddress, waited: float) -> None:
        ANNOUNCE_SECONDS.observe(waited)
        self.on_announced(ip)

    async def reconcile(self, wants: Iterable[Want]) -> Result:
        links = await self.netlink.links()
        self._links = {link.name: link for link in links.values()}
        haves = [
            Have(a.interface, links[a.ifindex].name, a.ours)
            for a in await self.netlink.addresses()
            if a.ifindex in links
        ]
        todo = plan(wants, haves, self._links.keys())
        problems = dict(todo.refused)
        for owner, reason in todo.refused.items():
            _log.debug("address refused", owner=owner, reason=reason)

        # Removals first: an address that moves to another link or prefix must
        # leave before it comes back.
        for have in todo.remove:
            link = self._links[have.link]
            self.announcer.withdraw(link.index, have.interface.ip)
            try:
                await self.netlink.remove(link.index, have.interface)
                _log.info("address removed", address=str(have.interface), link=have.link)
            except NetlinkError as exc:
                RECONCILE_ERRORS.labels("remove").inc()
                _log.error("cannot remove address", address=str(have.interface), error=str(exc))

        now = self._clock()
        await self._renew_due(todo.keep, problems, now)
        # An address we keep but did not hold on the previous pass (a leftover
        # of ours, still within its lifetime, whose claim has come back) is
        # news to the segment: the clients' ARP/ND entries may still point at
        # the node that held it meanwhile. Announce it as if we had added it.
        previous = {(w.link, w.interface) for w in self.held}
        for want in todo.keep:
            if (want.link, want.interface) not in previous and want.link in self._links:
                self.announcer.announce(self._links[want.link], want.interface.ip)
        for want in todo.add:
            if await self._step(want, problems, "add"):
                self._renewed[(want.link, want.interface)] = now
                _log.info("address added", address=str(want.interface), link=want.link,
                          owners=list(want.owners))
                self.announcer.announce(self._links[want.link], want.interface.ip)

        self.held = tuple(w for w in todo.held if not any(o in problems for o in w.owners))
        kept = {(w.link, w.interface) for w in self.held}
        self._renewed = {k: v for k, v in self._renewed.items() if k in kept}
        ADDRESSES_HELD.set(len(self.held))
        return Result(todo, self.held, problems)

    async def _renew_due(self, keep: Iterable[Want], problems: dict[str, str],
                         now: float) -> None:
        """Give a fresh lifetime to the kept addresses whose renewal is due."""
        due = [w for w in keep
               if now - self._renewed.get((w.link, w.interface), -math.inf) >= self._renew_after]
        failed = await self.netlink.refresh_many(
            [(self._links[w.link].index, w.interface) for w in due], self.lifetime)
        for want in due:
            code = failed.get((self._links[want.link].index, want.interface))
            if code is None:
                self._renewed[(want.link, want.interface)] = now
                continue
            RECONCILE_ERRORS.labels("refresh").inc()
            reason = f"cannot renew {want.interface} on {want.link}: {os.strerror(code)}"
            _log.error("address step failed", step="refresh", address=str(want.interface),
                       reason=reason)
            for owner in want.owners:
                problems[owner] = reason

    async def _step(self, want: Want, problems: dict[str, str], step: str) -> bool:
        link = self._links[want.link]
        try:
            await self.netlink.add(link.index, want.interface, self.lifetime)
        except AddressExistsError:
            # Configured by someone else between our dump and our add: theirs.
            reason = f"{want.interface.ip} appeared on {want.link} meanwhile, not added by us"
        except NetlinkError as exc:
            reason = f"cannot {step} {want.interface} on {want.link}: {exc}"
        else:
            return True
        RECONCILE_ERRORS.labels(step).inc()
        _log.error("address step failed", step=step, address=str(want.interface), reason=reason)
        for owner in want.owners:
            problems[owner] = reason
        return False

    async def adopt(self) -> int:
        """Leave every address carrying our mark exactly as it is, until told more.

        Used until the program knows what it must hold (claims or Services not
        listed yet): a restarted agent must neither drop nor re-add anything.
        Nor does it renew them: an agent that was away longer than its Lease
        may find its claims moved to another node, and renewing before it
        knows would stretch the time two nodes hold one IP. The first
        reconcile after the list arrives renews what is still ours and
        removes the rest; if the list never arrives, they expire.
        """
        if self._adopted is not None:
            return self._adopted
        links = await self.netlink.links()
        ours = [str(a.interface) for a in await self.netlink.addresses()
                if a.ours and a.ifindex in links]
        if ours:
            _log.info("adopted existing addresses", count=len(ours), addresses=ours)
        self._adopted = len(ours)
        return self._adopted

    async def watch(self, kick: asyncio.Event, on_link: Callable[[], None] = lambda: None) -> None:
        """Kick a reconcile on netlink changes that may need one, forever;
        `on_link` hears link events too (caches of link data drop them)."""
        while True:
            try:
                async for event in self.netlink.events():
                    if event.kind == "link":
                        self.netlink.forget_links()
                        on_link()
                        kick.set()
                    elif event.kind == "addr-removed" and event.ours:
                        kick.set()  # removed by hand or expired: put it back
                    elif event.kind == "addr-added" and not event.ours:
                        kick.set()  # a foreign address may now conflict with ours
            except OSError as exc:
                RECONCILE_ERRORS.labels("netlink-events").inc()
                _log.error("netlink event socket failed", error=str(exc))
                await asyncio.sleep(1)

    async def repeat_announcements(
        self, interval: float, allowed: Callable[[], bool] = lambda: True
    ) -> None:
        """--garp-interval: announce everything held again, forever, while `allowed()`."""
        while True:
            await asyncio.sleep(interval)
            if allowed():
                self.announce_held()

    def announce_held(self) -> None:
        """One more announcement of everything held (--garp-interval)."""
        for want in self.held:
            link = self._links.get(want.link)
            if link is None:
                continue
            try:
                self.announcer.send(link, want.interface.ip)
            except OSError as exc:
                RECONCILE_ERRORS.labels("announce").inc()
                _log.warning("announcement failed", address=str(want.interface), error=str(exc))

    async def close(self) -> None:
        await self.announcer.close()
        self.netlink.close()


def refresh_period(lifetime: float, resync: float) -> float:
    """How often to run even without events: a third of the lifetime, so two
    refreshes may be missed (a stalled loop, a busy node) before the kernel
    drops an address; at most the resync period."""
    if lifetime <= 0:
        return resync
    return max(0.2, min(resync, lifetime / 3))
