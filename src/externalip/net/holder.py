"""Holding a set of addresses on the wire: plan, apply, announce, refresh.

Shared by the claims-mode agent and simple mode. One `reconcile(wants)` reads
the kernel's links and addresses (the addresses from a cache kept by netlink
notifications, not a dump per pass), asks the pure `plan` what to do, removes
what is ours and no longer wanted, renews the lifetime of what stays, adds and
announces what is missing. It returns what is really held and what failed, so
the caller can report it (claim status, Events). No API access here.
"""

from __future__ import annotations

import asyncio
import errno
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge, Histogram

from externalip import log
from externalip.core.addresses import IPAddress, IPInterface
from externalip.core.holding import Have, Plan, Want, plan
from externalip.net.announce import Announcer
from externalip.net.netlink import Link, NetEvent, Netlink

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


def _failed(step: str, want: Want, reason: str, problems: dict[str, str]) -> None:
    """A step failed for one address: counted, logged, and its owners told why."""
    RECONCILE_ERRORS.labels(step).inc()
    _log.error("address step failed", step=step, address=str(want.interface), reason=reason)
    for owner in want.owners:
        problems[owner] = reason


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
        self._held_keys: set[tuple[str, IPInterface]] = set()  # (link, address) of `held`
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
        # The addresses first: reading them applies pending link events too.
        addresses = self.netlink.addresses()
        links = await self.netlink.links()
        self._links = {link.name: link for link in links.values()}
        haves = [Have(a.interface, links[a.ifindex].name, a.ours)
                 for a in addresses if a.ifindex in links]
        todo = plan(wants, haves, self._links.keys())
        problems = dict(todo.refused)
        for owner, reason in todo.refused.items():
            _log.debug("address refused", owner=owner, reason=reason)

        # Removals first: an address that moves to another link or prefix must
        # leave before it comes back.
        await self._remove(todo.remove)
        now = self._clock()
        await self._renew_due(todo.keep, problems, now)
        # An address we keep but did not hold on the previous pass (a leftover
        # of ours, still within its lifetime, whose claim has come back) is
        # news to the segment: the clients' ARP/ND entries may still point at
        # the node that held it meanwhile. Announce it as if we had added it.
        previous = self._held_keys
        for want in todo.keep:
            if want.link not in self._links:
                continue
            if want.handover:  # another node announces it now
                self.announcer.withdraw(self._links[want.link].index, want.interface.ip)
            elif (want.link, want.interface) not in previous:
                self.announcer.announce(self._links[want.link], want.interface.ip)
        await self._add(todo.add, problems, now)

        self.held = tuple(w for w in todo.held if not any(o in problems for o in w.owners))
        kept = self._held_keys = {(w.link, w.interface) for w in self.held}
        self._renewed = {k: v for k, v in self._renewed.items() if k in kept}
        ADDRESSES_HELD.set(len(self.held))
        return Result(todo, self.held, problems)

    async def _remove(self, haves: Iterable[Have]) -> None:
        """Remove addresses of ours, all in one batch."""
        items = []
        for have in haves:
            link = self._links[have.link]
            self.announcer.withdraw(link.index, have.interface.ip)
            items.append((link.index, have.interface))
        failed = await self.netlink.remove_many(items)
        for ifindex, interface in items:
            code = failed.get((ifindex, interface))
            if code is None:
                _log.info("address removed", address=str(interface), ifindex=ifindex)
                continue
            RECONCILE_ERRORS.labels("remove").inc()
            _log.error("cannot remove address", address=str(interface), ifindex=ifindex,
                       error=os.strerror(code))

    async def _add(self, wants: Iterable[Want], problems: dict[str, str], now: float) -> None:
        """Add and announce new addresses, all in one batch (a takeover of
        thousands of addresses is one system call per hundred)."""
        wants = list(wants)
        failed = await self.netlink.add_many(
            [(self._links[w.link].index, w.interface) for w in wants], self.lifetime)
        for want in wants:
            code = failed.get((self._links[want.link].index, want.interface))
            if code is None:
                self._renewed[(want.link, want.interface)] = now
                _log.info("address added", address=str(want.interface), link=want.link,
                          owners=list(want.owners))
                if not want.handover:
                    self.announcer.announce(self._links[want.link], want.interface.ip)
                continue
            if code == errno.EEXIST:  # configured by someone else since we looked: theirs
                reason = f"{want.interface.ip} appeared on {want.link} meanwhile, not added by us"
            else:
                reason = f"cannot add {want.interface} on {want.link}: {os.strerror(code)}"
            _failed("add", want, reason, problems)

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
            _failed("refresh", want,
                    f"cannot renew {want.interface} on {want.link}: {os.strerror(code)}",
                    problems)

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
        addresses = self.netlink.addresses()
        links = await self.netlink.links()
        ours = [str(a.interface) for a in addresses if a.ours and a.ifindex in links]
        if ours:
            _log.info("adopted existing addresses", count=len(ours), addresses=ours)
        self._adopted = len(ours)
        return self._adopted

    async def watch(self, kick: asyncio.Event, on_link: Callable[[], None] = lambda: None) -> None:
        """Keep the address cache current and kick a reconcile on changes that
        may need one, forever; `on_link` hears link events too (caches of link
        data drop them)."""
        def changed(event: NetEvent) -> None:
            if event.kind == "link" and event.ifindex == 0:
                RECONCILE_ERRORS.labels("netlink-lost").inc()
                _log.warning("netlink notifications were lost (receive buffer full); "
                             "the next pass makes a full address dump")
            if event.kind == "link":
                self.netlink.forget_links()
                on_link()
                kick.set()
            elif event.kind == "addr-removed" and event.ours:
                kick.set()  # removed by hand or expired: put it back
            elif event.kind == "addr-added" and not event.ours:
                kick.set()  # a foreign address may now conflict with ours

        self.netlink.cache.on_event = changed
        await self.netlink.cache.follow()

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
            if link is None or want.handover:
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
